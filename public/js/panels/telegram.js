// Telegram: get a one-time link code and its t.me deep link; see the linked channels.
import { call, describe, isAbsent, listIn, pick } from '../api.js';
import { busy, h, messageArea, replace, when } from '../dom.js';

export const ROUTES = {
  linkCode: '/auth/channels/telegram/link-code',
  channels: '/auth/channels',
};

const FEATURE = 'Telegram linking';

export default {
  id: 'telegram',
  title: 'Telegram',
  mount(root) {
    const message = messageArea();
    const form = h(
      'form',
      { id: 'telegram-form', class: 'card' },
      h('p', {}, 'Link your Telegram account: get a code, then open the link (or send /link <code> to the bot).'),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Get a link code')),
    );
    const result = h('div', { id: 'telegram-code', 'aria-live': 'polite' });
    const channels = h('div', { id: 'telegram-channels' });
    const signedOut = h('p', { class: 'muted' }, 'Sign in to link Telegram.');
    root.append(signedOut, message.el, form, result, channels);

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(form, async () => {
        const r = await call('POST', ROUTES.linkCode, { body: {} });
        if (!r.ok) {
          replace(result);
          return message.show(isAbsent(r) ? 'info' : 'error', describe(r, FEATURE));
        }
        message.clear();
        const { code, expiresAt, deepLink } = r.data;
        replace(
          result,
          h(
            'dl',
            { class: 'facts' },
            h('dt', {}, 'Code'),
            h('dd', {}, h('code', { class: 'secret' }, code)),
            h('dt', {}, 'Expires'),
            h('dd', {}, when(expiresAt)),
            deepLink ? h('dt', {}, 'Open in Telegram') : null,
            deepLink && /^https:\/\/t\.me\//.test(deepLink)
              ? h('dd', {}, h('a', { href: deepLink, rel: 'noopener noreferrer', target: '_blank' }, deepLink))
              : null,
          ),
        );
        loadChannels();
      });
    });

    async function loadChannels() {
      const r = await call('GET', ROUTES.channels);
      if (!r.ok) return replace(channels);
      const items = listIn(r.data, ['channels', 'links']);
      replace(
        channels,
        h('h3', {}, 'Linked channels'),
        items.length === 0
          ? h('p', { class: 'muted' }, 'None yet.')
          : h(
              'ul',
              { class: 'items' },
              items.map((c) =>
                h(
                  'li',
                  { class: 'item' },
                  `${pick(c, ['channelType', 'channel_type', 'type']) ?? 'channel'} · ${pick(c, ['channelUserId', 'channel_user_id', 'username']) ?? ''}`,
                  h('span', { class: 'muted' }, ` linked ${when(pick(c, ['createdAt', 'linkedAt', 'created_at']))}`),
                ),
              ),
            ),
      );
    }

    return {
      onSession(isIn) {
        signedOut.hidden = isIn;
        form.hidden = !isIn;
        result.hidden = !isIn;
        channels.hidden = !isIn;
        message.clear();
        replace(result);
        if (isIn) loadChannels();
        else replace(channels);
      },
    };
  },
};
