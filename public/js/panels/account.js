// Account: create an account, sign in with a password (and a second factor when the account has one) or with a
// passkey alone, see who is signed in, sign out.
import { call, describe, pick } from '../api.js';
import { busy, field, h, messageArea, replace, when } from '../dom.js';
import { getToken, setToken } from '../session.js';
import { signInWithPasskey } from './passkeys.js';

export const ROUTES = {
  register: '/auth/register',
  login: '/auth/login',
  logout: '/auth/logout',
  session: '/auth/session',
  twoFactorVerify: '/auth/2fa/verify',
};

export default {
  id: 'account',
  title: 'Account',
  mount(root) {
    const message = messageArea();
    const signedOutView = h('div', { class: 'stack' });
    const signedInView = h('div', { class: 'stack' });
    root.append(message.el, signedOutView, signedInView);

    // Sign in
    const email = field('Email', { type: 'email', name: 'email', autocomplete: 'username webauthn', required: true });
    const password = field('Password', {
      type: 'password',
      name: 'password',
      autocomplete: 'current-password',
      required: true,
    });
    const signIn = h(
      'form',
      { id: 'signin-form', class: 'card', 'aria-labelledby': 'signin-title' },
      h('h3', { id: 'signin-title' }, 'Sign in'),
      email.row,
      password.row,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit' }, 'Sign in'),
        h(
          'button',
          { type: 'button', class: 'secondary', id: 'passkey-signin', onclick: () => passkeyLogin() },
          'Sign in with a passkey',
        ),
      ),
    );
    signIn.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(signIn, async () => {
        message.show('info', 'Signing in…');
        const result = await call('POST', ROUTES.login, {
          auth: false,
          body: { email: email.input.value, password: password.input.value },
        });
        if (!result.ok) return message.show('error', describe(result, 'Password sign-in'));
        if (result.data?.twoFactorRequired) return askSecondFactor(result.data);
        password.input.value = '';
        signedIn(result.data.token, 'Signed in.');
      });
    });

    // Second factor (an account with two-factor on): the login answer carries no usable token yet.
    const code = field('Authentication code', {
      name: 'code',
      inputMode: 'numeric',
      autocomplete: 'one-time-code',
      required: true,
      maxLength: 32,
    });
    const secondFactor = h(
      'form',
      { id: 'second-factor-form', class: 'card', hidden: true, 'aria-labelledby': 'second-factor-title' },
      h('h3', { id: 'second-factor-title' }, 'Two-factor authentication'),
      h('p', {}, 'Enter the code from your authenticator app, or a backup code.'),
      code.row,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Verify')),
    );
    let pending = null;
    function askSecondFactor(data) {
      pending = data;
      secondFactor.hidden = false;
      code.input.value = '';
      code.input.focus();
      message.show('info', 'This account has two-factor authentication: enter a code to finish signing in.');
    }
    secondFactor.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(secondFactor, async () => {
        // Whatever the login answer gave to tie this step to it (a pending token) goes back with the code.
        const carry = {};
        for (const [key, value] of Object.entries(pending ?? {})) {
          if (typeof value === 'string' && /token/i.test(key)) carry[key] = value;
        }
        const result = await call('POST', ROUTES.twoFactorVerify, {
          auth: false,
          body: { ...carry, code: code.input.value.trim() },
        });
        if (!result.ok) return message.show('error', describe(result, 'Two-factor sign-in'));
        pending = null;
        secondFactor.hidden = true;
        password.input.value = '';
        signedIn(result.data.token, 'Signed in with two-factor authentication.');
      });
    });

    // Create an account
    const name = field('Name', { name: 'name', autocomplete: 'name', maxLength: 100 });
    const newEmail = field('Email', { type: 'email', name: 'email', autocomplete: 'email', required: true });
    const newPassword = field('Password (at least 8 characters)', {
      type: 'password',
      name: 'new-password',
      autocomplete: 'new-password',
      required: true,
      minLength: 8,
    });
    const signUp = h(
      'form',
      { id: 'signup-form', class: 'card', 'aria-labelledby': 'signup-title' },
      h('h3', { id: 'signup-title' }, 'Create an account'),
      name.row,
      newEmail.row,
      newPassword.row,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create account')),
    );
    signUp.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(signUp, async () => {
        message.show('info', 'Creating the account…');
        const result = await call('POST', ROUTES.register, {
          auth: false,
          body: { name: name.input.value, email: newEmail.input.value, password: newPassword.input.value },
        });
        if (!result.ok) {
          message.show('error', describe(result, 'Sign-up'));
          const bad = { email: newEmail, password: newPassword, name }[result.error?.field];
          bad?.input.focus();
          return;
        }
        newPassword.input.value = '';
        signedIn(result.data.token, 'Account created; you are signed in.');
      });
    });
    signedOutView.append(signIn, secondFactor, signUp);

    async function passkeyLogin() {
      message.show('info', 'Waiting for the passkey…');
      const result = await signInWithPasskey(email.input.value.trim());
      if (!result.ok) return message.show('error', result.message);
      signedIn(result.token, 'Signed in with a passkey.');
    }

    function signedIn(token, text) {
      setToken(token);
      message.show('ok', text);
    }

    // Signed in: profile and sign out
    async function showProfile() {
      const result = await call('GET', ROUTES.session);
      if (!result.ok) {
        replace(signedInView, h('p', {}, describe(result)));
        return;
      }
      const { user, session, license } = result.data;
      const signOut = h('button', { type: 'button', id: 'signout' }, 'Sign out');
      signOut.addEventListener('click', async () => {
        signOut.disabled = true;
        const out = await call('POST', ROUTES.logout);
        signOut.disabled = false;
        // Signed out either way: a token the gateway refuses is useless to this tab.
        setToken(null);
        if (out.ok || out.status === 401) message.show('ok', 'Signed out.');
        else message.show('error', `Signed out of this tab, but the gateway said: ${describe(out)}`);
      });
      replace(
        signedInView,
        h(
          'dl',
          { class: 'facts', id: 'profile' },
          h('dt', {}, 'Email'),
          h('dd', { id: 'profile-email' }, user.email),
          h('dt', {}, 'Name'),
          h('dd', {}, user.name || '—'),
          h('dt', {}, 'User id'),
          h('dd', { class: 'mono' }, user.id),
          h('dt', {}, 'License'),
          h('dd', {}, pick(license, ['type']) ?? '—'),
          h('dt', {}, 'Session expires'),
          h('dd', {}, when(session?.expiresAt)),
        ),
        h('div', { class: 'actions' }, signOut),
      );
    }

    return {
      onSession(isIn) {
        signedOutView.hidden = isIn;
        signedInView.hidden = !isIn;
        if (isIn && getToken()) showProfile();
        else replace(signedInView);
      },
    };
  },
};
