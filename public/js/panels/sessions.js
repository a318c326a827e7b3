// Sessions and devices: the signed-in user's active sessions; end one, or all but this one.
import { call, describe, isAbsent, listIn, pick } from '../api.js';
import { h, messageArea, replace, when } from '../dom.js';

export const ROUTES = {
  list: '/auth/sessions',
  one: (id) => `/auth/sessions/${encodeURIComponent(id)}`,
  revokeOthers: '/auth/sessions/revoke-others',
};

const FEATURE = 'Session management';

export default {
  id: 'sessions',
  title: 'Sessions and devices',
  mount(root) {
    const message = messageArea();
    const list = h('div', { id: 'session-list' });
    const reload = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
    const revokeOthers = h(
      'button',
      { type: 'button', class: 'danger', id: 'revoke-others' },
      'Sign out all other sessions',
    );
    const toolbar = h('div', { class: 'actions' }, reload, revokeOthers);
    const signedOut = h('p', { class: 'muted' }, 'Sign in to see your sessions.');
    root.append(signedOut, message.el, toolbar, list);

    reload.addEventListener('click', () => refresh());
    revokeOthers.addEventListener('click', async () => {
      revokeOthers.disabled = true;
      const r = await call('POST', ROUTES.revokeOthers, { body: {} });
      revokeOthers.disabled = false;
      if (!r.ok) return message.show('error', describe(r, FEATURE));
      message.show('ok', 'All other sessions were signed out.');
      refresh();
    });

    async function refresh() {
      const result = await call('GET', ROUTES.list);
      if (!result.ok) {
        replace(list);
        toolbar.hidden = isAbsent(result);
        return message.show(isAbsent(result) ? 'info' : 'error', describe(result, FEATURE));
      }
      toolbar.hidden = false;
      const items = listIn(result.data, ['sessions']);
      if (items.length === 0) return replace(list, h('p', { class: 'muted' }, 'No active sessions.'));
      replace(
        list,
        h(
          'ul',
          { class: 'items' },
          items.map((s) => {
            const id = String(pick(s, ['id']));
            const current = Boolean(pick(s, ['current', 'isCurrent']));
            const rawDevice = pick(s, ['device', 'deviceName', 'userAgent', 'user_agent']);
            const device =
              (rawDevice && typeof rawDevice === 'object' ? pick(rawDevice, ['name']) : rawDevice) ?? 'Unknown device';
            const end = h('button', { type: 'button', class: 'danger' }, current ? 'Sign out here' : 'End session');
            end.setAttribute(
              'aria-label',
              current ? 'End this session (sign out here)' : `End the session on ${device}`,
            );
            end.addEventListener('click', async () => {
              end.disabled = true;
              const r = await call('DELETE', ROUTES.one(id));
              end.disabled = false;
              if (!r.ok) return message.show('error', describe(r, FEATURE));
              message.show('ok', 'Session ended.');
              if (!current) refresh();
            });
            return h(
              'li',
              { class: 'item', 'data-id': id, 'data-current': current ? 'true' : 'false' },
              h(
                'div',
                {},
                h(
                  'strong',
                  {},
                  typeof device === 'object' ? (pick(device, ['name']) ?? JSON.stringify(device)) : device,
                ),
                current ? h('span', { class: 'badge' }, 'this session') : null,
                h(
                  'div',
                  { class: 'muted' },
                  [
                    pick(s, ['ip', 'ipAddress', 'ip_address']),
                    pick(s, ['channel']),
                    `last used ${when(pick(s, ['lastUsedAt', 'lastUsed', 'updatedAt']))}`,
                    `expires ${when(pick(s, ['expiresAt', 'expires_at']))}`,
                  ]
                    .filter(Boolean)
                    .join(' · '),
                ),
              ),
              h('div', { class: 'actions' }, end),
            );
          }),
        ),
      );
    }

    return {
      onSession(isIn) {
        signedOut.hidden = isIn;
        toolbar.hidden = !isIn;
        list.hidden = !isIn;
        message.clear();
        if (isIn) refresh();
        else replace(list);
      },
    };
  },
};
