// Two-factor (TOTP): turn it on (QR code + secret + backup codes), confirm with a first code, turn it off.
import { call, describe } from '../api.js';
import { busy, field, h, messageArea, replace } from '../dom.js';

export const ROUTES = {
  enable: '/auth/2fa/enable',
  confirm: '/auth/2fa/confirm',
  disable: '/auth/2fa/disable',
  /** Server-side QR rendering (the qrcode package has no browser ES module); the URI goes in the body. */
  qr: '/console/qr',
};

const FEATURE = 'Two-factor authentication';

/** The otpauth:// URI anywhere in an answer (field names differ between implementations). */
function findOtpauth(value, depth = 0) {
  if (typeof value === 'string') return value.startsWith('otpauth://') ? value : null;
  if (!value || typeof value !== 'object' || depth > 4) return null;
  for (const v of Object.values(value)) {
    const found = findOtpauth(v, depth + 1);
    if (found) return found;
  }
  return null;
}

/** Inserts the SVG the gateway rendered: parsed as SVG (not HTML), so nothing in it can run. */
function svgNode(text) {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const svg = doc.documentElement;
  if (svg.nodeName !== 'svg' || doc.querySelector('parsererror, script, foreignObject')) return null;
  const node = document.importNode(svg, true);
  node.setAttribute('role', 'img');
  node.setAttribute('aria-label', 'QR code for your authenticator app');
  node.setAttribute('class', 'qr');
  return node;
}

export default {
  id: 'two-factor',
  title: 'Two-factor authentication',
  mount(root) {
    const message = messageArea();
    const password = field('Current password', {
      type: 'password',
      name: 'tf-password',
      autocomplete: 'current-password',
      required: true,
    });
    const enableForm = h(
      'form',
      { id: 'two-factor-enable-form', class: 'card' },
      h('p', {}, 'Turn on two-factor authentication with an authenticator app (TOTP).'),
      password.row,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Turn on two-factor')),
    );
    const setup = h('div', { id: 'two-factor-setup', class: 'card', hidden: true });
    const code = field('Code from the app', {
      name: 'tf-code',
      inputMode: 'numeric',
      autocomplete: 'one-time-code',
      required: true,
      maxLength: 10,
    });
    const confirmForm = h(
      'form',
      { id: 'two-factor-confirm-form', class: 'card', hidden: true },
      h('p', {}, 'Enter the 6-digit code your app shows now to finish.'),
      code.row,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Confirm')),
    );
    // Turning off takes the password or a current code, and the person says which: a password may be all digits, and
    // sent as a code it would fail and count toward the 2FA lockout (which also blocks sign-ins).
    const disablePassword = field('Current password', {
      type: 'password',
      name: 'tf-disable-password',
      autocomplete: 'current-password',
      required: true,
    });
    const disableCode = field('Code from the app', {
      name: 'tf-disable-code',
      inputMode: 'numeric',
      autocomplete: 'one-time-code',
      required: true,
      // The route checks TOTP codes only: anything else (a backup code) would be a wrong code for the lockout.
      pattern: '\\d{6}',
      maxLength: 6,
      title: 'The 6-digit code your authenticator app shows now',
    });
    const disableByPassword = h(
      'form',
      { id: 'two-factor-disable-password-form', class: 'inline' },
      disablePassword.row,
      h('button', { type: 'submit', class: 'danger' }, 'Turn off with password'),
    );
    const disableByCode = h(
      'form',
      { id: 'two-factor-disable-code-form', class: 'inline' },
      disableCode.row,
      h('button', { type: 'submit', class: 'danger' }, 'Turn off with code'),
    );
    const disableCard = h(
      'div',
      { id: 'two-factor-disable', class: 'card' },
      h(
        'p',
        {},
        'Turn two-factor authentication off with your password or with the code your app shows now ' +
          '(backup codes only work for signing in).',
      ),
      disableByPassword,
      disableByCode,
    );
    const signedOut = h('p', { class: 'muted' }, 'Sign in to set up two-factor authentication.');
    root.append(signedOut, message.el, enableForm, setup, confirmForm, disableCard);

    enableForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(enableForm, async () => {
        const result = await call('POST', ROUTES.enable, { body: { password: password.input.value } });
        if (!result.ok) return message.show('error', describe(result, FEATURE));
        password.input.value = '';
        const uri = findOtpauth(result.data);
        if (!uri) return message.show('error', 'The gateway did not return an otpauth:// URI.');
        await showSetup(uri, result.data?.backupCodes ?? result.data?.backup_codes ?? []);
        confirmForm.hidden = false;
        code.input.focus();
        message.show('info', 'Scan the QR code (or type the secret) in your app, then confirm with a code.');
      });
    });

    async function showSetup(uri, backupCodes) {
      const secret = new URL(uri.replace(/^otpauth:/, 'https:')).searchParams.get('secret') ?? '';
      const qr = await call('POST', ROUTES.qr, { body: { text: uri } });
      const image = qr.ok ? svgNode(qr.data) : null;
      replace(
        setup,
        image ??
          h(
            'p',
            { class: 'message error' },
            `No QR code: ${qr.ok ? 'unreadable image' : describe(qr, 'QR rendering')}`,
          ),
        h(
          'p',
          {},
          'Secret (type it into the app if you cannot scan): ',
          h('code', { id: 'two-factor-secret', class: 'secret' }, secret),
        ),
        Array.isArray(backupCodes) && backupCodes.length > 0
          ? h(
              'div',
              {},
              h('p', {}, 'Backup codes: each works once. Keep them somewhere safe; they are shown only now.'),
              h(
                'ul',
                { class: 'codes', id: 'two-factor-backup-codes' },
                backupCodes.map((c) => h('li', {}, h('code', {}, String(c)))),
              ),
            )
          : null,
      );
      setup.hidden = false;
    }

    confirmForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(confirmForm, async () => {
        const result = await call('POST', ROUTES.confirm, { body: { code: code.input.value.trim() } });
        if (!result.ok) return message.show('error', describe(result, FEATURE));
        code.input.value = '';
        confirmForm.hidden = true;
        replace(setup);
        setup.hidden = true;
        message.show('ok', 'Two-factor authentication is on.');
      });
    });

    // The password goes as typed (spaces are part of it); a code is trimmed, as on confirm.
    turnOffWith(disableByPassword, disablePassword.input, (value) => ({ password: value }));
    turnOffWith(disableByCode, disableCode.input, (value) => ({ code: value.trim() }));

    /** Submitting `form` turns two-factor off with the body `bodyOf` makes of the input's value. */
    function turnOffWith(form, input, bodyOf) {
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        await busy(form, async () => {
          const result = await call('POST', ROUTES.disable, { body: bodyOf(input.value) });
          if (!result.ok) return message.show('error', describe(result, FEATURE));
          disablePassword.input.value = '';
          disableCode.input.value = '';
          message.show('ok', 'Two-factor authentication is off.');
        });
      });
    }

    return {
      onSession(isIn) {
        signedOut.hidden = isIn;
        enableForm.hidden = !isIn;
        disableCard.hidden = !isIn;
        confirmForm.hidden = true;
        setup.hidden = true;
        replace(setup);
        message.clear();
      },
    };
  },
};
