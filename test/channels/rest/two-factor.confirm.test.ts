import { createHash } from 'node:crypto';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statementsWaitingForALock } from '../../helpers/db-locks.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

type User = Awaited<ReturnType<typeof registerUser>>;

describe('TOTP two-factor: turning it on, and enrolments at once', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const post = (url: string, payload: object, token?: string, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url, payload, headers: token ? { ...headers, ...bearer(token) } : headers });
  const enable = async (u: User) => {
    const res = await post('/auth/2fa/enable', { password: u.password }, u.token);
    expect(res.statusCode).toBe(200);
    const body = res.json() as { otpauthUri: string; backupCodes: string[] };
    return { totp: OTPAuth.URI.parse(body.otpauthUri) as OTPAuth.TOTP, backupCodes: body.backupCodes };
  };
  const challenge = async (u: User) =>
    (await post('/auth/login', { email: u.email, password: u.password })).json().challengeToken as string;
  const sessionIdOf = (jwt: string): string =>
    (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }).sid;

  // Regression: a session signed in with the password before 2FA went on outlived it, stayed a recent authentication
  // and trusted its device (or added a passkey): the password alone then signed in with no code.
  it('confirming ends the other sessions and voids link codes; the confirming session stays', async () => {
    const owner = await registerUser(t.app);
    const device = 'password-only-device-0123456789abcdef';
    const before = await post('/auth/login', { email: owner.email, password: owner.password }, undefined, {
      'x-device-id': device,
    });
    expect(before.statusCode).toBe(200);
    const other = before.json().token as string;
    await t.db.query(
      `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at, session_id)
       VALUES ($1, $2, 'telegram', now() + interval '5 minutes', $3)`,
      [createHash('sha256').update(`code-${owner.userId}`).digest('hex'), owner.userId, sessionIdOf(owner.token)],
    );

    const { totp } = await enable(owner);
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, owner.token)).statusCode).toBe(200);

    // The password-only session is gone: it trusts no device, so the password alone is asked for a code.
    expect((await t.app.inject({ url: '/auth/devices', headers: bearer(other) })).statusCode).toBe(401);
    const again = await post('/auth/login', { email: owner.email, password: owner.password }, undefined, {
      'x-device-id': device,
    });
    expect(again.json().twoFactorRequired).toBe(true);
    expect((await t.app.inject({ url: '/auth/devices', headers: bearer(owner.token) })).statusCode).toBe(200);

    const { rows } = await t.db.query<{ sessions: number; codes: number; details: { endedSessions: number } }>(
      `SELECT (SELECT count(*)::int FROM sessions WHERE user_id = $1) AS sessions,
              (SELECT count(*)::int FROM channel_link_codes WHERE user_id = $1) AS codes,
              (SELECT details FROM auth_audit_log WHERE user_id = $1 AND event = 'twofactor.enabled') AS details`,
      [owner.userId],
    );
    expect(rows[0]).toEqual({ sessions: 1, codes: 0, details: { endedSessions: 1 } });
  });

  // Regression: a confirmation committed while an enable was between reading the pending row and writing it, and the
  // enable then wrote its new secret unconfirmed over it: 2FA on, with a secret no app had confirmed.
  it('an enable that read the pending enrolment before a confirmation commits writes nothing over it', async () => {
    const user = await registerUser(t.app);
    const { totp } = await enable(user);
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => {
      locked = r;
    });
    // The users row held: the confirmation waits inside its transaction, its two_factor row written and locked.
    const holder = t.db.transaction(async (q) => {
      await q.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [user.userId]);
      locked();
      await held;
    });
    await isLocked;
    const confirm = post('/auth/2fa/confirm', { code: totp.generate() }, user.token);
    await statementsWaitingForALock(t.db, 1);
    // The enable read the row as pending and waits to write it behind the confirmation.
    const again = post('/auth/2fa/enable', { password: user.password }, user.token);
    await statementsWaitingForALock(t.db, 2);
    release();
    await holder;
    const [confirmed, enabled] = await Promise.all([confirm, again]);
    expect(confirmed.statusCode).toBe(200);
    expect(enabled.statusCode).toBe(409);
    const { rows } = await t.db.query<{ enabled: boolean; verified: boolean }>(
      'SELECT u.two_factor_enabled AS enabled, f.verified FROM users u JOIN two_factor f ON f.user_id = u.id WHERE u.id = $1',
      [user.userId],
    );
    expect(rows[0]).toEqual({ enabled: true, verified: true });
    const verify = await post('/auth/2fa/verify', {
      challengeToken: await challenge(user),
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    expect(verify.statusCode).toBe(200);
  });

  // Regression: the plugin keeps a replaced enrolment's failure count and lock, so a new secret was locked (429).
  it('enabling again after the pending enrolment was locked by wrong confirmations gives a secret that confirms', async () => {
    const user = await registerUser(t.app);
    const { totp: old } = await enable(user);
    const wrong = old.generate({ timestamp: Date.now() + 600_000 });
    for (let i = 0; i < t.config.auth.two_factor.lockout_threshold; i++) {
      await post('/auth/2fa/confirm', { code: wrong }, user.token);
    }
    expect((await post('/auth/2fa/confirm', { code: old.generate() }, user.token)).statusCode).toBe(429);
    const { totp } = await enable(user);
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
  });

  // Regression: the plugin removes a used backup code with a write conditional on the list it read; the second of two
  // sign-ins at once answered 400 "try again", its challenge dead (the plugin had spent its attempt counter).
  it('two right backup codes on two pending sign-ins at once both sign in', async () => {
    const user = await registerUser(t.app);
    const { totp, backupCodes } = await enable(user);
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    const challenges = [await challenge(user), await challenge(user), await challenge(user)];
    const answers = await Promise.all(
      challenges.map((c, i) => post('/auth/2fa/verify', { challengeToken: c, code: backupCodes[i] as string })),
    );
    expect(answers.map((r) => r.statusCode)).toEqual([200, 200, 200]);
  });
});
