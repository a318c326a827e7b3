import Fastify from 'fastify';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireAuth } from '../../../src/channels/rest/require-auth.js';
import { requireRecentAuth } from '../../../src/channels/rest/require-recent-auth.js';
import { errorsPlugin } from '../../../src/http/errors.plugin.js';
import { startMailingApp } from '../../helpers/mailing-app.js';
import { addressOf, type SmtpSink } from '../../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

type User = Awaited<ReturnType<typeof registerUser>>;

describe('re-authentication for sensitive operations; password change; account deletion', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp());
  });
  afterAll(() => close?.());

  const bearer = (token: string, code?: string) => ({
    authorization: `Bearer ${token}`,
    ...(code ? { 'x-2fa-code': code } : {}),
  });
  const login = (u: { email: string; password: string }) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: u.email, password: u.password } });
  const change = (token: string, currentPassword: string, newPassword: string, code?: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/password/change',
      payload: { currentPassword, newPassword },
      headers: bearer(token, code),
    });
  const age = (user: User, seconds: number) =>
    t.db.query(`UPDATE sessions SET created_at = now() - make_interval(secs => $2) WHERE user_id = $1`, [
      user.userId,
      seconds,
    ]);

  it('password change ends the other sessions (their tokens 401, their sockets get the event), keeps this one', async () => {
    const user = await registerUser(t.app);
    const other = (await login(user)).json().token as string;
    const ended: string[] = [];
    const off = t.app.sessionEvents.onSessionEnded((e) => ended.push(e.sessionId));

    const res = await change(user.token, user.password, 'ChangedPassword456!');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: true, endedSessions: 1 });
    expect((await t.app.inject({ url: '/auth/session', headers: bearer(other) })).statusCode).toBe(401);
    expect((await t.app.inject({ url: '/auth/session', headers: bearer(user.token) })).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(401);
    expect((await login({ ...user, password: 'ChangedPassword456!' })).statusCode).toBe(200);
    await expect.poll(() => ended.length).toBe(1);
    off();

    await smtp.waitFor((m) => addressOf(m) === user.email && /password was changed/.test(m.subject ?? ''));
    const { rows } = await t.db.query(
      `SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'password.changed'`,
      [user.userId],
    );
    expect(rows).toHaveLength(1);
  });

  it('password change refuses a wrong current password (401) and a too-short new one (400)', async () => {
    const user = await registerUser(t.app);
    const wrong = await change(user.token, 'NotMyPassword1!', 'ChangedPassword456!');
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('INVALID_PASSWORD');
    const short = await change(user.token, user.password, 'short');
    expect(short.statusCode).toBe(400);
    expect(short.json().error.field).toBe('newPassword');
    expect((await change('not-a-token', user.password, 'ChangedPassword456!')).statusCode).toBe(401);
  });

  // Regression: a wrong current password was not counted, so a (recent) session could guess its account's password
  // here at the route's rate without ever being locked out.
  it('a wrong current password counts toward the per-account lockout that /auth/login uses', async () => {
    const strict = await createTestApp({ config: { lockout: { max_failures: 3 } } });
    try {
      const user = await registerUser(strict.app);
      const changeOn = (currentPassword: string) =>
        strict.app.inject({
          method: 'POST',
          url: '/auth/password/change',
          payload: { currentPassword, newPassword: 'ChangedPassword456!' },
          headers: bearer(user.token),
        });
      for (let i = 0; i < 3; i++)
        expect((await changeOn(`NotMyPassword${i}!`)).json().error.code).toBe('INVALID_PASSWORD');
      const locked = await changeOn(user.password);
      expect(locked.statusCode).toBe(429);
      expect(locked.json().error.code).toBe('ACCOUNT_LOCKED');
      const signIn = await strict.app.inject({
        method: 'POST',
        url: '/auth/login',
        payload: { email: user.email, password: user.password },
      });
      expect(signIn.json().error.code).toBe('ACCOUNT_LOCKED');
    } finally {
      await strict.close();
    }
  });

  it('a session older than recent_auth_window gets 403 REAUTH_REQUIRED; signing in again unlocks it', async () => {
    const user = await registerUser(t.app);
    await age(user, t.config.auth.recent_auth_window + 5);
    const res = await change(user.token, user.password, 'ChangedPassword456!');
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('REAUTH_REQUIRED');
    const del = await t.app.inject({ method: 'POST', url: '/auth/account/delete', headers: bearer(user.token) });
    expect(del.statusCode).toBe(403);
    expect(del.json().error.code).toBe('REAUTH_REQUIRED');
    // Without 2FA, a code cannot stand in for the sign-in.
    const code = await change(user.token, user.password, 'ChangedPassword456!', '123456');
    expect(code.json().error.code).toBe('REAUTH_REQUIRED');

    const fresh = (await login(user)).json().token as string;
    expect((await change(fresh, user.password, 'ChangedPassword456!')).statusCode).toBe(200);
  });

  // Regression: a session that ended between its request's authentication and the recent-sign-in check (a revocation
  // or a disable landing in between) got 403 REAUTH_REQUIRED, which sends a client to re-enter a password for a
  // session that is gone. The check is run here right after the row goes, as that race leaves it.
  it('a session gone by the time of the recent-sign-in check gets 401 INVALID_TOKEN, not REAUTH_REQUIRED', async () => {
    const user = await registerUser(t.app);
    const { rows } = await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [user.userId]);
    await t.db.query('DELETE FROM sessions WHERE user_id = $1', [user.userId]);
    await expect(t.app.recentAuth.assert(user.userId, rows[0]?.id ?? null, undefined)).rejects.toMatchObject({
      code: 'INVALID_TOKEN',
    });
  });

  it('with 2FA, a current TOTP code in X-2FA-Code stands in for a recent sign-in; a wrong one is 401', async () => {
    const user = await registerUser(t.app);
    const enable = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/enable',
      payload: { password: user.password },
      headers: bearer(user.token),
    });
    const totp = OTPAuth.URI.parse(enable.json().otpauthUri) as OTPAuth.TOTP;
    await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/confirm',
      payload: { code: totp.generate() },
      headers: bearer(user.token),
    });
    await age(user, 3600);
    const wrong = await change(user.token, user.password, 'ChangedPassword456!', totp.generate({ timestamp: 0 }));
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    // The confirmation used this time step's code; each step's code is accepted once, so use the next step's.
    const next = totp.generate({ timestamp: Date.now() + 30_000 });
    const ok = await change(user.token, user.password, 'ChangedPassword456!', next);
    expect(ok.statusCode).toBe(200);
    // The same code again is a replay: refused, whoever sends it.
    const replay = await change(user.token, 'ChangedPassword456!', 'ChangedAgain789!', next);
    expect(replay.statusCode).toBe(401);
    expect(replay.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    // Parallel uses of one fresh code: exactly one passes.
    await t.db.query('UPDATE two_factor SET last_used_step = NULL WHERE user_id = $1', [user.userId]);
    const later = totp.generate();
    const deletes = await Promise.all(
      Array.from({ length: 10 }, () =>
        t.app.inject({ method: 'POST', url: '/auth/account/delete', headers: bearer(user.token, later) }),
      ),
    );
    expect(deletes.filter((r) => r.statusCode === 200)).toHaveLength(1);
  });

  it('account deletion removes the user and every session; the audit row stays', async () => {
    const user = await registerUser(t.app);
    const other = (await login(user)).json().token as string;
    const res = await t.app.inject({ method: 'POST', url: '/auth/account/delete', headers: bearer(user.token) });
    expect(res.statusCode).toBe(200);
    expect((await t.app.inject({ url: '/auth/session', headers: bearer(other) })).statusCode).toBe(401);
    expect((await login(user)).statusCode).toBe(401);
    const { rows: users } = await t.db.query('SELECT 1 FROM users WHERE id = $1', [user.userId]);
    expect(users).toHaveLength(0);
    const { rows } = await t.db.query<{ details: { deletedUserId: string } }>(
      `SELECT details FROM auth_audit_log WHERE event = 'account.deleted'`,
    );
    expect(rows.map((r) => r.details.deletedUserId)).toContain(user.userId);
  });

  it("Better Auth's HTTP routes for the same changes are closed (they would skip the re-authentication)", async () => {
    const user = await registerUser(t.app);
    for (const [url, payload] of [
      ['/api/auth/change-password', { currentPassword: user.password, newPassword: 'ChangedPassword456!' }],
      ['/api/auth/two-factor/disable', { password: user.password }],
    ] as const) {
      const res = await t.app.inject({ method: 'POST', url, payload, headers: bearer(user.token) });
      expect(res.statusCode, url).toBe(404);
    }
    expect((await login(user)).statusCode).toBe(200);
  });

  it('requireRecentAuth is reusable on any route after requireAuth', async () => {
    const app = Fastify();
    await app.register(errorsPlugin);
    app.delete(
      '/things/:id',
      { preHandler: [requireAuth(t.app.authenticator), requireRecentAuth(t.app.recentAuth)] },
      async () => ({ success: true }),
    );
    const user = await registerUser(t.app);
    expect((await app.inject({ method: 'DELETE', url: '/things/1', headers: bearer(user.token) })).statusCode).toBe(
      200,
    );
    expect((await app.inject({ method: 'DELETE', url: '/things/1' })).statusCode).toBe(401);
    await age(user, 3600);
    const stale = await app.inject({ method: 'DELETE', url: '/things/1', headers: bearer(user.token) });
    expect(stale.statusCode).toBe(403);
    expect(stale.json().error.code).toBe('REAUTH_REQUIRED');
    await app.close();
  });
});
