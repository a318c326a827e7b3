import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Queryable } from '../../src/db/index.js';
import { whileSignInWaits } from '../helpers/in-flight.js';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import { addPasskey, assertion, postAuthentication } from '../passkeys/helpers.js';

// The guard sits where Better Auth creates sessions, so sign-in methods built by other modules (passkeys, magic links,
// OAuth, anonymous trials, the 2FA step) cannot skip it.
describe('sign-in guard: every way a session is created', () => {
  let t: TestApp;
  /** Better Auth's own password sign-in, as a browser on the gateway's origin sends it. */
  const betterAuthSignIn = (user: { email: string; password: string }) =>
    t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
      payload: JSON.stringify({ email: user.email, password: user.password }),
    });
  beforeAll(async () => {
    t = await createTestApp({ config: { ip_restrictions: { allow: [], deny: ['203.0.113.0/24'] } } });
  });
  afterAll(() => t?.close());

  it('refuses a session for a disabled user through engine.createSession (passkey and 2FA sign-ins use it)', async () => {
    const user = await registerUser(t.app);
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
    await expect(t.app.engine.createSession(user.userId, { ip: '192.0.2.1', userAgent: null })).rejects.toMatchObject({
      code: 'ACCOUNT_DISABLED',
      status: 403,
    });
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(1); // only the registration's session; disabling through the admin API also ends it
  });

  // Regression: the guard read the user, then Better Auth inserted the session in another statement; a disable (or
  // any deletion of the user's sessions) committing between the two missed the new session, which outlived it.
  it('refuses a session through engine.createSession when a disable commits as it is inserted, and keeps none', async () => {
    for (const at of ['before the insert', 'after the insert'] as const) {
      const user = await registerUser(t.app);
      const signIn = whileSignInWaits(
        t.db,
        user.userId,
        at,
        () => t.app.engine.createSession(user.userId, { ip: '192.0.2.1', userAgent: null }),
        async (tx) => {
          await tx.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
          await tx.query('DELETE FROM sessions WHERE user_id = $1', [user.userId]);
        },
      );
      await expect(signIn, at).rejects.toMatchObject({ code: 'ACCOUNT_DISABLED', status: 403 });
      const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
      expect(rows, at).toHaveLength(0);
    }
  });

  it('refuses a session through engine.createSession that a revocation ended as it was inserted', async () => {
    const user = await registerUser(t.app);
    const signIn = whileSignInWaits(
      t.db,
      user.userId,
      'after the insert',
      () => t.app.engine.createSession(user.userId, { ip: '192.0.2.1', userAgent: null }),
      async (tx) => {
        await tx.query('DELETE FROM sessions WHERE user_id = $1', [user.userId]);
      },
    );
    // Not a 200 with a token that no longer works.
    await expect(signIn).rejects.toMatchObject({ code: 'ACCOUNT_DISABLED', status: 403 });
  });

  // Regression: an account deleted between the guard's read and the session insert broke the sessions -> users
  // foreign key (23503), which nothing translated: 500 INTERNAL_ERROR where a refusal is the answer.
  it('refuses a session whose account is deleted as it is inserted: each path as for an unknown account', async () => {
    const deleteUser = (userId: string) => async (tx: Queryable) => {
      await tx.query('DELETE FROM users WHERE id = $1', [userId]);
    };
    // engine.createSession (passkey, Telegram widget): as the guard refuses a session whose user went after the insert.
    const a = await registerUser(t.app);
    const viaEngine = whileSignInWaits(
      t.db,
      a.userId,
      'before the insert',
      () => t.app.engine.createSession(a.userId, { ip: '192.0.2.1', userAgent: null }),
      deleteUser(a.userId),
    );
    await expect(viaEngine).rejects.toMatchObject({ code: 'ACCOUNT_DISABLED', status: 403 });
    // The magic link's session: as a link whose account is gone.
    const b = await registerUser(t.app);
    const viaMagicLink = whileSignInWaits(
      t.db,
      b.userId,
      'before the insert',
      () => t.app.engine.methods.createSession(b.userId, new Headers()),
      deleteUser(b.userId),
    );
    await expect(viaMagicLink).rejects.toMatchObject({ code: 'MAGIC_LINK_INVALID' });
    // A passkey sign-in: its passkey went with the account, so it is an unknown passkey.
    const c = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    await addPasskey(t.app, c.token, authenticator);
    const credential = await assertion(t.app, authenticator);
    const res = await whileSignInWaits(
      t.db,
      c.userId,
      'before the insert',
      () => postAuthentication(t.app, credential),
      deleteUser(c.userId),
    );
    expect([res.statusCode, res.json().error?.code]).toEqual([401, 'PASSKEY_UNKNOWN_CREDENTIAL']);
  });

  // Regression (review H): Better Auth's own password sign-in reads the user, then inserts the session; an account
  // deleted in between broke the foreign key, and its handler answered 500.
  it("answers Better Auth's /api/auth/sign-in/email whose account is deleted as the session is inserted as a wrong password", async () => {
    const user = await registerUser(t.app);
    const res = await whileSignInWaits(
      t.db,
      user.userId,
      'before the insert',
      () => betterAuthSignIn(user),
      async (tx) => {
        await tx.query('DELETE FROM users WHERE id = $1', [user.userId]);
      },
    );
    expect([res.statusCode, res.json().code]).toEqual([401, 'INVALID_EMAIL_OR_PASSWORD']);
  });

  it("refuses Better Auth's /api/auth/sign-in/email when a disable commits as the session is inserted", async () => {
    for (const at of ['before the insert', 'after the insert'] as const) {
      const user = await registerUser(t.app);
      const res = await whileSignInWaits(
        t.db,
        user.userId,
        at,
        () => betterAuthSignIn(user),
        async (tx) => {
          await tx.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
          await tx.query('DELETE FROM sessions WHERE user_id = $1', [user.userId]);
        },
      );
      expect([res.statusCode, res.json().code ?? res.json().error?.code], at).toEqual([403, 'ACCOUNT_DISABLED']);
      expect(res.headers['x-auth-token'], at).toBeUndefined();
      const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
      expect(rows, at).toHaveLength(0);
    }
  });

  it("refuses a session from outside the user's allow list through engine.createSession, audited", async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE users SET ip_allowlist = '{198.51.100.0/24}' WHERE id = $1`, [user.userId]);
    await expect(t.app.engine.createSession(user.userId, { ip: '192.0.2.1', userAgent: null })).rejects.toMatchObject({
      code: 'IP_NOT_ALLOWED',
    });
    const ok = await t.app.engine.createSession(user.userId, { ip: '198.51.100.3', userAgent: null });
    expect(ok.userId).toBe(user.userId);
    const audit = await t.db.query<{ details: { reason: string; at: string } }>(
      "SELECT details FROM auth_audit_log WHERE event = 'ip.refused' AND user_id = $1",
      [user.userId],
    );
    expect(audit.rows.map((r) => r.details)).toEqual([{ reason: 'user_allow', at: 'sign-in' }]);
  });

  it('refuses the other sign-in routes from a globally denied address before they do anything', async () => {
    for (const [method, url, payload] of [
      ['POST', '/auth/anonymous', {}],
      ['POST', '/auth/magic-link', { email: 'someone@example.com' }],
      ['GET', '/auth/oauth/google', undefined],
      ['POST', '/auth/passkey/authenticate/options', {}],
      ['POST', '/auth/2fa/verify', { challengeToken: 'x', code: '123456' }],
    ] as const) {
      const res = await t.app.inject({ method, url, remoteAddress: '203.0.113.50', ...(payload ? { payload } : {}) });
      expect(res.statusCode, url).toBe(403);
      expect(res.json().error.code).toBe('IP_NOT_ALLOWED');
    }
    const { rows } = await t.db.query("SELECT 1 FROM users WHERE email LIKE '%anonymous.invalid'");
    expect(rows).toHaveLength(0);
  });

  // Regression: the check matched the raw URL, and Fastify routes the decoded path, so `/auth/%6cogin` reached
  // /auth/login unchecked (a password oracle for a denied address) and `/auth/%72egister` created a user.
  it('refuses percent-encoded spellings of the sign-in routes from a globally denied address', async () => {
    const user = await registerUser(t.app);
    const denied = (method: 'GET' | 'POST', url: string, payload?: object) =>
      t.app.inject({ method, url, remoteAddress: '203.0.113.51', ...(payload ? { payload } : {}) });
    for (const [method, url, payload] of [
      ['POST', '/auth/%6cogin', { email: user.email, password: user.password }],
      ['POST', '/auth/%6Cogin', { email: user.email, password: 'wrong-password' }],
      ['POST', '/auth/%72egister', { email: 'encoded.register@example.com', password: 'SecurePassword123!' }],
      ['POST', '/auth/%61nonymous', {}],
      ['GET', '/auth/magic-link/%76erify?token=x', undefined],
      ['GET', '/auth/oauth/%67oogle', undefined],
      ['POST', '/auth/passkey/authenticate/%6fptions', {}],
      ['POST', '/auth/2fa/%76erify', { challengeToken: 'x', code: '123456' }],
      ['POST', '/api/auth/sign-in/%65mail', { email: user.email, password: user.password }],
    ] as const) {
      const res = await denied(method, url, payload);
      expect(res.statusCode, url).toBe(403);
      expect(res.json().error.code, url).toBe('IP_NOT_ALLOWED');
    }
    const { rows } = await t.db.query("SELECT 1 FROM users WHERE email = 'encoded.register@example.com'");
    expect(rows).toHaveLength(0);
    // The same routes still serve an address that is not denied.
    const ok = await t.app.inject({
      method: 'POST',
      url: '/auth/%6cogin',
      payload: { email: user.email, password: user.password },
    });
    expect(ok.statusCode).toBe(200);
  });

  it('files an anonymous trial session under a device too', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/auth/anonymous', payload: {} });
    expect(res.statusCode).toBeLessThan(300);
    expect(res.headers['x-device-id']).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const token = res.json().token as string;
    const devices = await t.app.inject({
      method: 'GET',
      url: '/auth/devices',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(devices.json().devices).toHaveLength(1);
  });
});
