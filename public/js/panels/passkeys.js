// Passkeys: register one for the signed-in user, list, rename and delete them; signInWithPasskey() is used by the
// account panel for a sign-in with the passkey alone (usernameless; an email narrows the choice).
import { browserSupportsWebAuthn, startAuthentication, startRegistration } from '/vendor/simplewebauthn-browser.js';
import { call, describe, isAbsent, listIn, pick } from '../api.js';
import { busy, field, h, messageArea, replace, when } from '../dom.js';

export const ROUTES = {
  registerOptions: '/auth/passkey/register/options',
  register: '/api/auth/passkey/register',
  authenticateOptions: '/api/auth/passkey/authenticate/options',
  authenticate: '/auth/passkey/authenticate',
  list: '/auth/passkeys',
  one: (id) => `/auth/passkeys/${encodeURIComponent(id)}`,
};

const FEATURE = 'Passkeys';

/** Options answers may be the options themselves or wrap them ({options}, {publicKey}). */
function optionsIn(data) {
  if (data && typeof data === 'object') {
    if (data.challenge) return data;
    for (const key of ['options', 'publicKey', 'optionsJSON']) if (data[key]?.challenge) return data[key];
  }
  return data;
}

/** What the browser said, in words. */
function webauthnMessage(err) {
  if (err?.name === 'NotAllowedError') return 'The passkey prompt was cancelled or timed out.';
  if (err?.name === 'InvalidStateError') return 'This device already holds a passkey for this account.';
  return `The browser could not use a passkey: ${err?.message ?? err}`;
}

/** Sign in with a passkey: { ok: true, token } or { ok: false, message }. */
export async function signInWithPasskey(email) {
  if (!browserSupportsWebAuthn()) return { ok: false, message: 'This browser does not support passkeys.' };
  const query = email ? `?email=${encodeURIComponent(email)}` : '';
  const options = await call('GET', `${ROUTES.authenticateOptions}${query}`, { auth: false });
  if (!options.ok) return { ok: false, message: describe(options, 'Passkey sign-in') };
  let credential;
  try {
    credential = await startAuthentication({ optionsJSON: optionsIn(options.data) });
  } catch (err) {
    return { ok: false, message: webauthnMessage(err) };
  }
  const result = await call('POST', ROUTES.authenticate, { auth: false, body: { credential } });
  if (!result.ok) return { ok: false, message: describe(result, 'Passkey sign-in') };
  return { ok: true, token: result.data.token };
}

export default {
  id: 'passkeys',
  title: 'Passkeys',
  mount(root) {
    const message = messageArea();
    const list = h('div', { id: 'passkey-list' });
    const name = field('Name for the new passkey (optional)', { name: 'passkey-name', maxLength: 64 });
    const form = h(
      'form',
      { id: 'passkey-register-form', class: 'card' },
      name.row,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add a passkey')),
    );
    const signedOut = h(
      'p',
      { class: 'muted' },
      'Sign in to manage passkeys. You can sign in with a passkey in the Account panel.',
    );
    root.append(signedOut, message.el, form, list);

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!browserSupportsWebAuthn()) return message.show('error', 'This browser does not support passkeys.');
      await busy(form, async () => {
        message.show('info', 'Asking the gateway for registration options…');
        const options = await call('POST', ROUTES.registerOptions, { body: {} });
        if (!options.ok) return message.show('error', describe(options, FEATURE));
        let credential;
        try {
          message.show('info', 'Waiting for the passkey…');
          credential = await startRegistration({ optionsJSON: optionsIn(options.data) });
        } catch (err) {
          return message.show('error', webauthnMessage(err));
        }
        const body = { credential };
        if (name.input.value.trim()) body.name = name.input.value.trim();
        const result = await call('POST', ROUTES.register, { body });
        if (!result.ok) return message.show('error', describe(result, FEATURE));
        name.input.value = '';
        message.show('ok', 'Passkey added.');
        await refresh();
      });
    });

    async function refresh() {
      const result = await call('GET', ROUTES.list);
      if (!result.ok) {
        replace(list);
        form.hidden = isAbsent(result);
        return message.show(isAbsent(result) ? 'info' : 'error', describe(result, FEATURE));
      }
      form.hidden = false;
      const items = listIn(result.data, ['passkeys']);
      if (items.length === 0) return replace(list, h('p', { class: 'muted' }, 'No passkeys yet.'));
      replace(
        list,
        h(
          'ul',
          { class: 'items' },
          items.map((p) => {
            const id = String(pick(p, ['id']));
            const label = pick(p, ['name']) || 'Unnamed passkey';
            const rename = h('button', { type: 'button', class: 'secondary' }, 'Rename');
            const remove = h('button', { type: 'button', class: 'danger' }, 'Delete');
            rename.addEventListener('click', () => renameForm(item, id, label));
            remove.addEventListener('click', async () => {
              remove.disabled = true;
              const r = await call('DELETE', ROUTES.one(id));
              remove.disabled = false;
              if (!r.ok) return message.show('error', describe(r, FEATURE));
              message.show('ok', `Deleted passkey “${label}”.`);
              refresh();
            });
            const item = h(
              'li',
              { class: 'item', 'data-id': id },
              h(
                'div',
                {},
                h('strong', {}, label),
                h(
                  'div',
                  { class: 'muted' },
                  `Added ${when(pick(p, ['createdAt', 'created_at']))}`,
                  pick(p, ['deviceType', 'device_type']) ? ` · ${pick(p, ['deviceType', 'device_type'])}` : '',
                  pick(p, ['backedUp', 'backed_up']) ? ' · synced' : '',
                ),
              ),
              h('div', { class: 'actions' }, rename, remove),
            );
            return item;
          }),
        ),
      );
    }

    function renameForm(item, id, current) {
      const input = field('New name', { value: current, maxLength: 64, required: true });
      const f = h(
        'form',
        { class: 'inline' },
        input.row,
        h('button', { type: 'submit' }, 'Save'),
        h('button', { type: 'button', class: 'secondary', onclick: () => refresh() }, 'Cancel'),
      );
      f.addEventListener('submit', async (event) => {
        event.preventDefault();
        await busy(f, async () => {
          const r = await call('PATCH', ROUTES.one(id), { body: { name: input.input.value.trim() } });
          if (!r.ok) return message.show('error', describe(r, FEATURE));
          message.show('ok', 'Passkey renamed.');
          refresh();
        });
      });
      item.append(f);
      input.input.focus();
    }

    return {
      onSession(isIn) {
        signedOut.hidden = isIn;
        form.hidden = !isIn;
        list.hidden = !isIn;
        message.clear();
        if (isIn) refresh();
        else replace(list);
      },
    };
  },
};
