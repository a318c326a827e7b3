import * as OTPAuth from 'otpauth';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Queryable } from '../../src/db/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';

// POST /auth/login signs in on its own path (src/auth/password-sign-in.ts), not through Better Auth's endpoint.
// These tests hold it to what Better Auth's sign-in does, so the two stay interchangeable.
describe('password sign-in (POST /auth/login)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());
  afterEach(() => vi.restoreAllMocks());

  const login = (email: string, password: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': UA, 'x-forwarded-for': '203.0.113.7' },
      payload: { email, password },
    });
  const betterAuthLogin = (email: string, password: string) =>
    t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'user-agent': UA, origin: 'http://localhost:3000', 'content-type': 'application/json' },
      payload: JSON.stringify({ email, password }),
    });
  const sessionIdOf = (jwt: string): string =>
    (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }).sid;
  interface SessionRow {
    id: string;
    token: string;
    user_id: string;
    ip_address: string;
    user_agent: string;
    device_id: string | null;
    lifetime: number;
  }
  const sessionRow = async (where: string, value: string) =>
    (
      await t.db.query<SessionRow>(
        `SELECT id, token, user_id, ip_address, user_agent, device_id,
                extract(epoch FROM expires_at - created_at)::int AS lifetime
           FROM sessions WHERE ${where} = $1`,
        [value],
      )
    ).rows[0];

  it('writes the session row Better Auth writes, and Better Auth accepts it', async () => {
    const user = await registerUser(t.app);
    const ours = await login(user.email, user.password);
    expect(ours.statusCode).toBe(200);
    const theirs = await betterAuthLogin(user.email, user.password);
    expect(theirs.statusCode).toBe(200);

    const a = await sessionRow('id', sessionIdOf(ours.json().token));
    const b = await sessionRow('token', theirs.json().token);
    expect(a && b).toBeTruthy();
    if (!a || !b) return;
    expect(a.token).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(b.token).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(a.id).toMatch(/^sess_\d+_[a-z0-9]+$/);
    expect(a.user_id).toBe(user.userId);
    expect(a.user_agent).toBe(UA);
    expect(a.lifetime).toBe(b.lifetime);
    expect(a.lifetime).toBe(t.config.auth.session.expires_in);
    expect(a.device_id).not.toBeNull();

    // Our token works on Better Auth's own routes (the mount hands Better Auth this row's token).
    const viaBetterAuth = await t.app.inject({
      method: 'GET',
      url: '/api/auth/get-session',
      headers: { authorization: `Bearer ${ours.json().token}` },
    });
    expect(viaBetterAuth.statusCode).toBe(200);
    expect(viaBetterAuth.json()).toMatchObject({ session: { id: a.id, userId: user.userId } });
  });

  it('records the client IP as Better Auth does (trusted proxy header only when configured)', async () => {
    const user = await registerUser(t.app);
    const ours = await login(user.email, user.password);
    const theirs = await betterAuthLogin(user.email, user.password);
    const a = await sessionRow('id', sessionIdOf(ours.json().token));
    const b = await sessionRow('token', theirs.json().token);
    // trust_proxy is off in the test config: the forwarded address is not the client's.
    expect(a?.ip_address).not.toBe('203.0.113.7');
    expect(a?.ip_address).toBe(b?.ip_address);
  });

  it('one argon2 computation per attempt whatever the address, and the same answer', async () => {
    const user = await registerUser(t.app);
    const oauthOnly = await registerUser(t.app);
    await t.db.query(`DELETE FROM user_credentials WHERE user_id = $1`, [oauthOnly.userId]);
    await t.db.query(
      `INSERT INTO user_credentials (id, user_id, account_id, provider_id) VALUES ($1, $2, '12345', 'github')`,
      [`cred_${Date.now()}_oauth`, oauthOnly.userId],
    );
    const hash = vi.spyOn(t.app.hasher, 'hash');
    const verify = vi.spyOn(t.app.hasher, 'verify');
    const attempts: Array<[string, string, number]> = [
      ['nobody-here@example.com', 'SecurePassword123!', 401],
      [oauthOnly.email, oauthOnly.password, 401],
      [user.email, 'WrongPassword123!', 401],
      [user.email.toUpperCase(), user.password, 200],
    ];
    const bodies: unknown[] = [];
    for (const [email, password, status] of attempts) {
      hash.mockClear();
      verify.mockClear();
      const res = await login(email, password);
      expect(res.statusCode).toBe(status);
      expect(hash.mock.calls.length + verify.mock.calls.length).toBe(1);
      if (status === 401) bodies.push(res.json());
    }
    expect(bodies).toEqual([bodies[0], bodies[0], bodies[0]]);
    expect(bodies[0]).toMatchObject({ success: false, error: { code: 'INVALID_CREDENTIALS' } });
  });

  it('a password longer than any can be costs no argon2 computation, known address or not', async () => {
    const user = await registerUser(t.app);
    // 100 code points (within the schema's cap of 128 characters), 200 UTF-16 units (over the hasher's): refused
    // before the lookup, so a known address is not answered sooner than an unknown one, whose dummy hash would run.
    const password = '\u{1F600}'.repeat(100);
    const hash = vi.spyOn(t.app.hasher, 'hash');
    const verify = vi.spyOn(t.app.hasher, 'verify');
    for (const email of [user.email, 'nobody-here@example.com']) {
      const res = await login(email, password);
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('INVALID_CREDENTIALS');
    }
    expect(hash).not.toHaveBeenCalled();
    expect(verify).not.toHaveBeenCalled();
  });

  it('writes the session, files it under its device and records login.success, together', async () => {
    const user = await registerUser(t.app);
    const longAgent = `${UA} ${'x'.repeat(600)}`;
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': longAgent },
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    const session = await sessionRow('id', sessionIdOf(res.json().token));
    const { rows: devices } = await t.db.query<{ id: string; user_agent: string; name: string }>(
      'SELECT id, user_agent, name FROM devices WHERE id = $1 AND user_id = $2',
      [session?.device_id, user.userId],
    );
    expect(devices[0]).toMatchObject({ user_agent: longAgent, name: expect.stringContaining('Chrome') });
    const { rows: audit } = await t.db.query<Record<string, unknown>>(
      `SELECT user_id, channel, ip_address, user_agent, details FROM auth_audit_log
        WHERE event = 'login.success' AND session_id = $1`,
      [session?.id],
    );
    // One row; the user agent kept to the audit log's 512 characters (the session keeps it whole).
    expect(audit).toEqual([
      {
        user_id: user.userId,
        channel: 'rest',
        ip_address: session?.ip_address,
        user_agent: longAgent.slice(0, 512),
        details: { method: 'password' },
      },
    ]);
    expect(session?.user_agent).toBe(longAgent);

    // The device key sent back files the next sign-in under the same device, without a second row.
    const again = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': UA, 'x-device-id': String(res.headers['x-device-id']) },
      payload: { email: user.email, password: user.password },
    });
    expect((await sessionRow('id', sessionIdOf(again.json().token)))?.device_id).toBe(session?.device_id);
    const { rows: updated } = await t.db.query('SELECT user_agent FROM devices WHERE id = $1', [session?.device_id]);
    expect(updated).toEqual([{ user_agent: UA }]);
  });

  /**
   * Signs `user` in while `change` happens to the account during the password check (the `verification`th, 1 unless
   * said): committed before the check ends, or (inFlight) written but not yet committed when the sign-in writes its
   * session, and committed 300 ms later. Through POST /auth/login unless `signIn` says otherwise.
   */
  async function loginWhile(
    user: { userId: string; email: string; password: string },
    change: (q: Queryable) => Promise<void>,
    options: { inFlight: boolean; verification?: number; signIn?: typeof login },
  ) {
    const verify = t.app.hasher.verify.bind(t.app.hasher);
    let committed: Promise<unknown> = Promise.resolve();
    let calls = 0;
    vi.spyOn(t.app.hasher, 'verify').mockImplementation(async (hash, password) => {
      calls += 1;
      if (calls !== (options.verification ?? 1)) return verify(hash, password);
      if (!options.inFlight) {
        await change(t.db);
        return verify(hash, password);
      }
      let started: () => void = () => {};
      const written = new Promise<void>((resolve) => {
        started = resolve;
      });
      committed = t.db.transaction(async (tx) => {
        await change(tx);
        started();
        await new Promise((resolve) => setTimeout(resolve, 300));
      });
      await written;
      return verify(hash, password);
    });
    const res = await (options.signIn ?? login)(user.email, user.password);
    await committed;
    return res;
  }
  /** An admin's disable: the user row, and the end of its sessions. */
  const disable = (userId: string) => async (q: Queryable) => {
    await q.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
    await q.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
  };
  /** A password change (or a magic link's reclaim): the credential, and the end of every session. */
  const changePassword = (userId: string) => async (q: Queryable) => {
    await q.query(
      `UPDATE user_credentials SET password_hash = 'changed' WHERE user_id = $1 AND provider_id = 'credential'`,
      [userId],
    );
    await q.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
  };

  it('a disable still in flight when the session is written is waited for, and wins', async () => {
    const user = await registerUser(t.app);
    const res = await loginWhile(user, disable(user.userId), { inFlight: true });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('ACCOUNT_DISABLED');
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
  });

  it('an account disabled while its password is being verified gets no session', async () => {
    const user = await registerUser(t.app);
    const devicesBefore = await t.db.query('SELECT id FROM devices WHERE user_id = $1', [user.userId]);
    const res = await loginWhile(user, disable(user.userId), { inFlight: false });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('ACCOUNT_DISABLED');
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
    // Nor a device or a login.success row: the statement that would write them wrote nothing.
    const devicesAfter = await t.db.query('SELECT id FROM devices WHERE user_id = $1', [user.userId]);
    expect(devicesAfter.rows).toEqual(devicesBefore.rows);
    const { rows: audit } = await t.db.query(
      `SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'login.success'`,
      [user.userId],
    );
    expect(audit).toEqual([]);
  });

  // Regression: an account deleted while its password was being verified was answered 403 ACCOUNT_DISABLED (no row
  // was taken for a disabled one): it no longer exists, and is answered as an unknown address is.
  for (const inFlight of [false, true]) {
    it(`an account deleted while its password is being verified is answered as an unknown one (${inFlight ? 'in flight' : 'committed'})`, async () => {
      const user = await registerUser(t.app);
      const remove = async (q: Queryable) => {
        await q.query('DELETE FROM users WHERE id = $1', [user.userId]);
      };
      const res = await loginWhile(user, remove, { inFlight });
      expect([res.statusCode, res.json().error.code]).toEqual([401, 'INVALID_CREDENTIALS']);
    });
  }

  // Regression: the session was written if the account was still enabled, whatever had happened to the password
  // meanwhile: a sign-in with the old password, started before a password change (or a magic link's reclaim), could
  // still get a session after the change had ended every other one.
  it('a password changed while it is being verified gets no session', async () => {
    const user = await registerUser(t.app);
    const res = await loginWhile(user, changePassword(user.userId), { inFlight: false });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_CREDENTIALS');
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
  });

  it('a password change still in flight when the session is written is waited for, and wins', async () => {
    const user = await registerUser(t.app);
    const res = await loginWhile(user, changePassword(user.userId), { inFlight: true });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_CREDENTIALS');
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
  });

  /** Turns on 2FA for `user` (their session confirms a current code); the TOTP generator of the enrolment. */
  async function enableTwoFactor(user: { token: string; password: string }) {
    const auth = { authorization: `Bearer ${user.token}` };
    const enable = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/enable',
      headers: auth,
      payload: { password: user.password },
    });
    const totp = OTPAuth.URI.parse(enable.json().otpauthUri) as OTPAuth.TOTP;
    return {
      totp,
      confirm: async () => {
        const res = await t.app.inject({
          method: 'POST',
          url: '/auth/2fa/confirm',
          headers: auth,
          payload: { code: totp.generate() },
        });
        expect(res.statusCode).toBe(200);
      },
    };
  }
  /** A user with 2FA on and a device they marked trusted; `signIn` signs in from it (the skip applies). */
  async function trustedDevice() {
    const user = await registerUser(t.app);
    const { totp, confirm } = await enableTwoFactor(user);
    await confirm();
    // Trusting takes a recent sign-in, which with 2FA on takes a code (enabling 2FA withdraws every earlier trust).
    const first = await login(user.email, user.password);
    const key = String(first.headers['x-device-id']);
    const verified = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/verify',
      headers: { 'x-device-id': key },
      payload: { challengeToken: first.json().challengeToken, code: totp.generate({ timestamp: Date.now() + 30_000 }) },
    });
    const token = verified.json().token as string;
    const deviceId = (await sessionRow('id', sessionIdOf(token)))?.device_id ?? '';
    const trust = await t.app.inject({
      method: 'PATCH',
      url: `/auth/devices/${deviceId}`,
      headers: { authorization: `Bearer ${token}` },
      payload: { trusted: true },
    });
    expect(trust.json().device).toMatchObject({ trusted: true });
    const signIn = (email: string, password: string) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/login',
        headers: { 'x-device-id': key },
        payload: { email, password },
      });
    expect((await signIn(user.email, user.password)).json().token).toEqual(expect.any(String));
    return { user, deviceId, signIn };
  }
  /** No session of `user` skipped the code (a login.success that says trustedDevice) after `since`. */
  const skippedSince = async (userId: string, since: Date) =>
    (
      await t.db.query(
        `SELECT 1 FROM auth_audit_log
          WHERE user_id = $1 AND event = 'login.success' AND details ? 'trustedDevice' AND created_at > $2`,
        [userId, since],
      )
    ).rows.length;

  // Regression: the 2FA state and the device's trust were read before the password check and not again: a trust
  // withdrawn, or the device removed, meanwhile still skipped the code (and the removed device came back, with a session).
  for (const inFlight of [false, true]) {
    it(`a device untrusted while the password is being verified gets the 2FA challenge (${inFlight ? 'in flight' : 'committed'})`, async () => {
      const { user, deviceId, signIn } = await trustedDevice();
      const since = new Date();
      const untrust = async (q: Queryable) => {
        await q.query('UPDATE devices SET trusted_until = NULL WHERE id = $1', [deviceId]);
      };
      const res = await loginWhile(user, untrust, { inFlight, signIn });
      expect(res.json()).toMatchObject({ twoFactorRequired: true, challengeToken: expect.any(String) });
      expect(await skippedSince(user.userId, since)).toBe(0);
    });

    it(`a trusted device removed while the password is being verified gets the 2FA challenge, and no session or trust back (${inFlight ? 'in flight' : 'committed'})`, async () => {
      const { user, deviceId, signIn } = await trustedDevice();
      const since = new Date();
      const remove = async (q: Queryable) => {
        await q.query('DELETE FROM devices WHERE id = $1', [deviceId]);
      };
      const res = await loginWhile(user, remove, { inFlight, signIn });
      expect(res.json()).toMatchObject({ twoFactorRequired: true, challengeToken: expect.any(String) });
      expect(await skippedSince(user.userId, since)).toBe(0);
      // The removed device is not filed again with its trust. (Better Auth's challenge files the key's device afresh,
      // untrusted, as for any 2FA sign-in from it: its sign-in makes a session that its 2FA plugin then deletes.)
      const { rows } = await t.db.query(
        'SELECT id FROM devices WHERE user_id = $1 AND (id = $2 OR trusted_until IS NOT NULL)',
        [user.userId, deviceId],
      );
      expect(rows).toEqual([]);
      const { rows: sessions } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1 AND created_at > $2', [
        user.userId,
        since,
      ]);
      expect(sessions).toEqual([]);
    });
  }

  // Regression: 2FA turned on while the password was being verified did not stop the session made without a code.
  it('2FA turned on while the password is being verified gets the challenge', async () => {
    const user = await registerUser(t.app);
    const { confirm } = await enableTwoFactor(user);
    const res = await loginWhile(user, confirm, { inFlight: false });
    expect(res.json()).toMatchObject({ twoFactorRequired: true, challengeToken: expect.any(String) });
    const { rows } = await t.db.query(`SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'login.success'`, [
      user.userId,
    ]);
    expect(rows).toEqual([]);
  });

  // Regression: Better Auth's sign-in (served at /api/auth/sign-in/email) wrote its session without reading the
  // password again: one started with the old password before a change or reset outlived it, and kept working.
  for (const inFlight of [false, true]) {
    it(`Better Auth's sign-in gets no session when the password changes mid-verify (${inFlight ? 'in flight' : 'committed'})`, async () => {
      const user = await registerUser(t.app);
      const wrong = await betterAuthLogin(user.email, 'WrongPassword123!');
      const res = await loginWhile(user, changePassword(user.userId), { inFlight, signIn: betterAuthLogin });
      expect(res.statusCode).toBe(401);
      // Answered as a wrong password is on that route, and with no cookie or token of a session.
      expect(res.json()).toEqual(wrong.json());
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(res.headers['x-auth-token']).toBeUndefined();
      const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
      expect(rows).toHaveLength(0);
    });
  }

  // Regression: for an account with 2FA, /auth/login takes Better Auth's sign-in, which issued its challenge whatever
  // had happened to the password meanwhile: the old password's challenge still completed after a reset.
  it('a 2FA sign-in whose password is reset mid-verify gets no challenge that can complete', async () => {
    const user = await registerUser(t.app);
    const { confirm } = await enableTwoFactor(user);
    await confirm();
    // A verified address: the reset keeps the enrolment (it does not reclaim the account).
    await t.db.query('UPDATE users SET email_verified = true WHERE id = $1', [user.userId]);
    const token = 'PasswordRaceResetToken123';
    await t.db.query(
      `INSERT INTO verification_tokens (id, identifier, token, expires_at) VALUES ($1, $2, $3, now() + interval '1 hour')`,
      [`ver_${token}`, `reset-password:${token}`, user.userId],
    );
    const reset = async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/password/reset',
        payload: { token, password: 'ResetPassword789!' },
      });
      expect(res.statusCode).toBe(200);
    };
    // Our path verifies first (2FA: no session there), then Better Auth's sign-in verifies again: the 2nd check.
    const res = await loginWhile(user, reset, { inFlight: false, verification: 2 });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_CREDENTIALS');
    expect(res.json().challengeToken).toBeUndefined();
    // No pending challenge (nor any other proof) of the user is left, and no session.
    const { rows: pending } = await t.db.query('SELECT identifier FROM verification_tokens WHERE token = $1', [
      user.userId,
    ]);
    expect(pending).toEqual([]);
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
    // The new password still signs in (to the challenge).
    expect((await login(user.email, 'ResetPassword789!')).json().challengeToken).toEqual(expect.any(String));
  });
});
