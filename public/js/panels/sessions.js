// Sessions and devices: the signed-in user's active sessions; end one, or all but this one.
import { call, describe, isAbsent, listIn, pick } from '../api.js';
import { h, messageArea, replace, when } from '../dom.js';
import { setToken } from '../session.js';

export const ROUTES = {
  list: '/auth/sessions',
  one: (id) => `/auth/sessions/${encodeURIComponent(id)}`,
  revokeOthers: '/auth/sessions/revoke-others',
};

const FEATURE = 'Session management';

/** A session's device in words; the gateway names it '' when the user agent says nothing readable. */
function deviceOf(session) {
  const raw = pick(session, ['device', 'deviceName', 'userAgent', 'user_agent']);
  const name = raw && typeof raw === 'object' ? pick(raw, ['name']) : raw;
  return String(name ?? '').trim() || 'Unknown device';
}

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
            const device = deviceOf(s);
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
              if (current) return signedOutHere();
              message.show('ok', 'Session ended.');
              refresh();
            });
            return h(
              'li',
              { class: 'item', 'data-id': id, 'data-current': current ? 'true' : 'false' },
              h(
                'div',
                {},
                h('strong', {}, device),
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

    /**
     * This tab's own session was ended: its token is dead, so the tab signs out as the Account panel's Sign out does
     * (every panel and the header hear it). The message comes after, as signing out clears each panel's.
     */
    function signedOutHere() {
      setToken(null);
      message.show('ok', 'Session ended; this tab is signed out.');
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
