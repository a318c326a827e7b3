import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

type User = Awaited<ReturnType<typeof registerUser>>;

describe('TOTP two-factor: enrolment and disabling need a recent sign-in; their passwords count toward the lockout', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { lockout: { max_failures: 3, base_lockout: 60 } } });
  });
  afterAll(() => t?.close());

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const post = (url: string, payload: object, token: string) =>
    t.app.inject({ method: 'POST', url, payload, headers: bearer(token) });
  const login = (u: User, password = u.password) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: u.email, password } });
  /** Every session of the user made to look `seconds` old. */
  const age = (user: User, seconds: number) =>
    t.db.query(`UPDATE sessions SET created_at = now() - make_interval(secs => $2) WHERE user_id = $1`, [
      user.userId,
      seconds,
    ]);
  const stale = () => t.config.auth.recent_auth_window + 3600;
  const codeOf = (res: { json(): { error?: { code?: string } } }) => res.json().error?.code;

  async function enrolled(): Promise<{ user: User; totp: OTPAuth.TOTP }> {
    const user = await registerUser(t.app);
    const res = await post('/auth/2fa/enable', { password: user.password }, user.token);
    expect(res.statusCode).toBe(200);
    const totp = OTPAuth.URI.parse(res.json().otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    return { user, totp };
  }

  // Regression: a stolen session of any age could guess the password on enable and disable outside the lockout, and
  // enrol a TOTP secret only the thief has (the owner's next sign-in then asked for the thief's code).
  it('an old session can neither enrol nor disable with the password: 403 before any password is looked at', async () => {
    const user = await registerUser(t.app);
    await age(user, stale());
    for (const password of [
      'WrongPassword1!',
      'WrongPassword2!',
      'WrongPassword3!',
      'WrongPassword4!',
      user.password,
    ]) {
      const res = await post('/auth/2fa/enable', { password }, user.token);
      expect(res.statusCode).toBe(403);
      expect(codeOf(res)).toBe('REAUTH_REQUIRED');
    }
    const { rows } = await t.db.query('SELECT 1 FROM two_factor WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
    // Nothing was counted (the password was never checked): the owner signs in.
    expect((await login(user)).statusCode).toBe(200);

    // A pending enrolment started while the session was recent cannot be confirmed once it is old.
    const owner = await registerUser(t.app);
    const pending = await post('/auth/2fa/enable', { password: owner.password }, owner.token);
    const totp = OTPAuth.URI.parse(pending.json().otpauthUri) as OTPAuth.TOTP;
    await age(owner, stale());
    const confirm = await post('/auth/2fa/confirm', { code: totp.generate() }, owner.token);
    expect(confirm.statusCode).toBe(403);
    expect(codeOf(confirm)).toBe('REAUTH_REQUIRED');
    expect((await login(owner)).json().token).toMatch(/^eyJ/);

    // Disable with the password: the same refusal for a wrong and a right password.
    const on = await enrolled();
    await age(on.user, stale());
    for (const password of [
      'WrongPassword1!',
      'WrongPassword2!',
      'WrongPassword3!',
      'WrongPassword4!',
      on.user.password,
    ]) {
      const res = await post('/auth/2fa/disable', { password }, on.user.token);
      expect(res.statusCode).toBe(403);
      expect(codeOf(res)).toBe('REAUTH_REQUIRED');
    }
    expect((await login(on.user)).json().twoFactorRequired).toBe(true);
  });

  it('wrong passwords on enable and disable count toward the per-account lockout that /auth/login uses', async () => {
    const user = await registerUser(t.app);
    for (let i = 0; i < 3; i++) {
      const res = await post('/auth/2fa/enable', { password: `WrongPassword${i}!` }, user.token);
      expect(res.statusCode).toBe(401);
      expect(codeOf(res)).toBe('INVALID_PASSWORD');
    }
    // Locked: even the right password is not checked, here or on /auth/login.
    const locked = await post('/auth/2fa/enable', { password: user.password }, user.token);
    expect(locked.statusCode).toBe(429);
    expect(codeOf(locked)).toBe('ACCOUNT_LOCKED');
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    expect(codeOf(await login(user))).toBe('ACCOUNT_LOCKED');
    const lockouts = await t.db.query(`SELECT 1 FROM auth_audit_log WHERE event = 'lockout' AND user_id = $1`, [
      user.userId,
    ]);
    expect(lockouts.rows).toHaveLength(1);

    // Disable's password path shares the count with /auth/login; a right password clears it, as a sign-in does.
    const { user: other } = await enrolled();
    expect(codeOf(await post('/auth/2fa/disable', { password: 'WrongPassword1!' }, other.token))).toBe(
      'INVALID_PASSWORD',
    );
    expect((await login(other, 'WrongPassword2!')).statusCode).toBe(401);
    expect((await post('/auth/2fa/enable', { password: other.password }, other.token)).statusCode).toBe(409);
    expect(codeOf(await post('/auth/2fa/disable', { password: 'WrongPassword3!' }, other.token))).toBe(
      'INVALID_PASSWORD',
    );
    const otherLocked = await post('/auth/2fa/disable', { password: other.password }, other.token);
    expect(otherLocked.statusCode).toBe(429);
    expect(codeOf(otherLocked)).toBe('ACCOUNT_LOCKED');

    const third = await registerUser(t.app);
    for (let i = 0; i < 2; i++) await post('/auth/2fa/enable', { password: `WrongPassword${i}!` }, third.token);
    expect((await post('/auth/2fa/enable', { password: third.password }, third.token)).statusCode).toBe(200);
    for (let i = 0; i < 2; i++) expect((await login(third, `WrongPassword${i}!`)).statusCode).toBe(401);
    expect((await login(third)).statusCode).toBe(200);
  });

  // Regression: check() read the lock before comparing a code and counted the failure after, so every X-2FA-Code
  // already in flight was compared: a stolen session sent 40 guesses at once, lockout_threshold or not.
  it('a burst of wrong X-2FA-Code guesses at once: at most lockout_threshold are compared', async () => {
    const { user, totp } = await enrolled();
    const threshold = t.config.auth.two_factor.lockout_threshold;
    await age(user, stale()); // only a code lets this session delete the account
    const near = new Set([-1, 0, 1].map((d) => totp.generate({ timestamp: Date.now() + d * 30_000 })));
    const guesses = Array.from({ length: 40 }, (_, i) => String(100_000 + i * 7919));
    const deleteWith = (code: string) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/account/delete',
        headers: { ...bearer(user.token), 'x-2fa-code': code },
      });
    const answers = (await Promise.all(guesses.filter((g) => !near.has(g)).map(deleteWith))).map(codeOf);
    expect(answers.filter((a) => a === 'TWO_FACTOR_INVALID_CODE').length).toBeLessThanOrEqual(threshold);
    expect([...new Set(answers.filter((a) => a !== 'TWO_FACTOR_INVALID_CODE'))]).toEqual(['TWO_FACTOR_LOCKED']);
    const { rows } = await t.db.query<{ n: number }>(
      'SELECT failed_verification_count AS n FROM two_factor WHERE user_id = $1',
      [user.userId],
    );
    expect(rows[0]?.n).toBeLessThanOrEqual(threshold);
    // Locked: the right code is refused too, and the account is still there.
    const right = await deleteWith(totp.generate({ timestamp: Date.now() + 30_000 }));
    expect(codeOf(right)).toBe('TWO_FACTOR_LOCKED');
    expect((await t.db.query('SELECT 1 FROM users WHERE id = $1', [user.userId])).rows).toHaveLength(1);
  });
});
