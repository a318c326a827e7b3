// Audit trail: the signed-in user's own security events, newest first, a page at a time.
import { call, describe, isAbsent, listIn, pick } from '../api.js';
import { h, messageArea, replace, when } from '../dom.js';

export const ROUTES = { list: '/auth/audit' };
const FEATURE = 'The audit trail';
const PAGE = 20;

export default {
  id: 'audit',
  title: 'Audit trail',
  mount(root) {
    const message = messageArea();
    const table = h('div', { id: 'audit-table', class: 'table-wrap' });
    const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older events');
    const reload = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
    const toolbar = h('div', { class: 'actions' }, reload);
    const signedOut = h('p', { class: 'muted' }, 'Sign in to see your audit trail.');
    root.append(signedOut, message.el, toolbar, table, more);
    let rows = [];
    let next = null;

    reload.addEventListener('click', () => load(true));
    more.addEventListener('click', () => load(false));

    async function load(fresh) {
      const params = new URLSearchParams({ limit: String(PAGE) });
      if (!fresh && next) params.set(next.name, next.value);
      const r = await call('GET', `${ROUTES.list}?${params}`);
      if (!r.ok) {
        replace(table);
        more.hidden = true;
        toolbar.hidden = isAbsent(r);
        return message.show(isAbsent(r) ? 'info' : 'error', describe(r, FEATURE));
      }
      message.clear();
      const page = listIn(r.data, ['events', 'items', 'entries']);
      rows = fresh ? page : rows.concat(page);
      const cursor = pick(r.data, ['nextCursor', 'cursor', 'next']);
      next = cursor ? { name: 'cursor', value: String(cursor) } : null;
      more.hidden = !next || page.length === 0;
      render();
    }

    function render() {
      if (rows.length === 0) return replace(table, h('p', { class: 'muted' }, 'No events yet.'));
      replace(
        table,
        h(
          'table',
          {},
          h('caption', { class: 'visually-hidden' }, 'Your security events, newest first'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Time', 'Event', 'Channel', 'IP', 'Details'].map((t) => h('th', { scope: 'col' }, t)),
            ),
          ),
          h(
            'tbody',
            {},
            rows.map((e) => {
              const details = pick(e, ['details']);
              return h(
                'tr',
                {},
                h('td', {}, when(pick(e, ['createdAt', 'at', 'time', 'created_at', 'timestamp']))),
                h('td', {}, String(pick(e, ['event', 'type']) ?? '')),
                h('td', {}, String(pick(e, ['channel']) ?? '')),
                h('td', { class: 'mono' }, String(pick(e, ['ip', 'ipAddress', 'ip_address']) ?? '')),
                h('td', { class: 'mono small' }, details && Object.keys(details).length ? JSON.stringify(details) : ''),
              );
            }),
          ),
        ),
      );
    }

    return {
      onSession(isIn) {
        signedOut.hidden = isIn;
        toolbar.hidden = !isIn;
        table.hidden = !isIn;
        more.hidden = true;
        message.clear();
        rows = [];
        next = null;
        if (isIn) load(true);
        else replace(table);
      },
    };
  },
};
