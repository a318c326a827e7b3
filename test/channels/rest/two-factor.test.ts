import { createHash } from 'node:crypto';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

type User = Awaited<ReturnType<typeof registerUser>>;

describe('TOTP two-factor', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const post = (url: string, payload: object, token?: string) =>
    t.app.inject({ method: 'POST', url, payload, headers: token ? bearer(token) : {} });
  const login = (u: User) => post('/auth/login', { email: u.email, password: u.password });
  const verify = (challengeToken: string, code: string) => post('/auth/2fa/verify', { challengeToken, code });
  const sessionIdOf = (jwt: string): string =>
    (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }).sid;
  /** The id of the device the session of `token` is filed under. */
  const currentDeviceId = async (token: string): Promise<string> => {
    const res = await t.app.inject({ url: '/auth/devices', headers: bearer(token) });
    const devices = res.json().devices as Array<{ id: string; current: boolean }>;
    return devices.find((d) => d.current)?.id as string;
  };
  const setTrust = (token: string, deviceId: string, trusted: boolean) =>
    t.app.inject({ method: 'PATCH', url: `/auth/devices/${deviceId}`, headers: bearer(token), payload: { trusted } });
  /** A code that is valid at no moment near now (10 minutes ahead). */
  const wrongCode = (totp: OTPAuth.TOTP) => totp.generate({ timestamp: Date.now() + 600_000 });
  /**
   * The next time step's code (valid now: one step of skew is allowed). Each step's code is accepted once per account,
   * and the confirmation in enrolled() used this step's.
   */
  const nextCode = (totp: OTPAuth.TOTP) => totp.generate({ timestamp: Date.now() + 30_000 });
  /** A pending sign-in through Better Auth's own route: its challenge cookie. */
  const challengeCookie = async (user: User) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: 'http://localhost:3000' },
      payload: { email: user.email, password: user.password },
    });
    expect(res.json().twoFactorRedirect).toBe(true);
    return ([] as string[])
      .concat(res.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .find((c) => c.startsWith('better-auth.two_factor=')) as string;
  };
  /** A code sent with a challenge cookie to Better Auth's own verify-totp (or verify-backup-code) route. */
  const verifyThere = (cookie: string, code: string, route = 'verify-totp') =>
    t.app.inject({
      method: 'POST',
      url: `/api/auth/two-factor/${route}`,
      headers: { cookie, origin: 'http://localhost:3000' },
      payload: { code },
    });

  async function enrolled(): Promise<{ user: User; totp: OTPAuth.TOTP; backupCodes: string[] }> {
    const user = await registerUser(t.app);
    const res = await post('/auth/2fa/enable', { password: user.password }, user.token);
    expect(res.statusCode).toBe(200);
    const { otpauthUri, backupCodes } = res.json();
    const totp = OTPAuth.URI.parse(otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    return { user, totp, backupCodes };
  }

  async function challenge(user: User): Promise<string> {
    const res = await login(user);
    expect(res.statusCode).toBe(200);
    return res.json().challengeToken;
  }

  it('enable returns an otpauth URI and backup codes; inactive until confirmed with a first code', async () => {
    const user = await registerUser(t.app);
    const wrongPw = await post('/auth/2fa/enable', { password: 'WrongPassword123!' }, user.token);
    expect(wrongPw.statusCode).toBe(401);
    expect(wrongPw.json().error.code).toBe('INVALID_PASSWORD');

    const res = await post('/auth/2fa/enable', { password: user.password }, user.token);
    expect(res.statusCode).toBe(200);
    const { otpauthUri, backupCodes } = res.json();
    expect(otpauthUri).toMatch(/^otpauth:\/\/totp\/Auth%20Gateway:/);
    expect(backupCodes).toHaveLength(10);
    const totp = OTPAuth.URI.parse(otpauthUri) as OTPAuth.TOTP;

    // Secret and backup codes are stored encrypted, not as given.
    const { rows } = await t.db.query<{ secret: string; backup_codes: string; verified: boolean }>(
      'SELECT secret, backup_codes, verified FROM two_factor WHERE user_id = $1',
      [user.userId],
    );
    expect(rows[0]?.verified).toBe(false);
    expect(rows[0]?.secret).not.toContain(totp.secret.base32);
    expect(rows[0]?.backup_codes).not.toContain(backupCodes[0]);

    // Not confirmed yet: login still answers a token at once.
    expect((await login(user)).json().token).toMatch(/^eyJ/);

    const wrong = await post('/auth/2fa/confirm', { code: wrongCode(totp) }, user.token);
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    // The caller's session (and token) survive the confirmation.
    expect((await t.app.inject({ url: '/auth/session', headers: bearer(user.token) })).statusCode).toBe(200);
    const again = await post('/auth/2fa/enable', { password: user.password }, user.token);
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('TWO_FACTOR_ALREADY_ENABLED');
  });

  // Regression: enrolments started at once (a double click) all inserted a two_factor row; all but one broke its
  // unique index on user_id and answered 500.
  it('enrolment started 20 times at once: all 200, one pending row, that of one of the last answers', async () => {
    const user = await registerUser(t.app);
    const answered: Array<{ otpauthUri: string; backupCodes: string[] }> = [];
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await post('/auth/2fa/enable', { password: user.password }, user.token);
        if (res.statusCode === 200) answered.push(res.json());
        return res.statusCode;
      }),
    );
    expect(statuses).toEqual(Array(20).fill(200));
    const { rows } = await t.db.query('SELECT verified FROM two_factor WHERE user_id = $1', [user.userId]);
    expect(rows).toEqual([{ verified: false }]);
    // Each answer is the enrolment stored after its own write, so the one written last is among the last answers
    // (another request may write between an answer's read and its delivery): tried from the last, a replaced one is
    // refused as a wrong code, and one of the first few confirms, with its backup codes.
    let confirmed: { otpauthUri: string; backupCodes: string[] } | undefined;
    for (const answer of answered.slice(-3).reverse()) {
      const totp = OTPAuth.URI.parse(answer.otpauthUri) as OTPAuth.TOTP;
      expect(answer.otpauthUri).toMatch(/^otpauth:\/\/totp\/Auth%20Gateway:/);
      expect(totp.secret.bytes).toHaveLength(32);
      const res = await post('/auth/2fa/confirm', { code: totp.generate() }, user.token);
      if (res.statusCode === 200) {
        confirmed = answer;
        break;
      }
      expect(res.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    }
    expect(confirmed).toBeDefined();
    const signIn = await login(user);
    expect((await verify(signIn.json().challengeToken, confirmed?.backupCodes[0] as string)).statusCode).toBe(200);
  });

  it('a second enrolment started after the first replaces it: the first secret no longer confirms', async () => {
    const user = await registerUser(t.app);
    const first = await post('/auth/2fa/enable', { password: user.password }, user.token);
    const second = await post('/auth/2fa/enable', { password: user.password }, user.token);
    expect([first.statusCode, second.statusCode]).toEqual([200, 200]);
    const firstTotp = OTPAuth.URI.parse(first.json().otpauthUri) as OTPAuth.TOTP;
    const secondTotp = OTPAuth.URI.parse(second.json().otpauthUri) as OTPAuth.TOTP;
    expect(secondTotp.secret.base32).not.toBe(firstTotp.secret.base32);
    expect(second.json().backupCodes).not.toEqual(first.json().backupCodes);
    const stale = await post('/auth/2fa/confirm', { code: firstTotp.generate() }, user.token);
    expect(stale.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    expect((await post('/auth/2fa/confirm', { code: secondTotp.generate() }, user.token)).statusCode).toBe(200);
    // Better Auth's own enable route is not served at /api/auth: the gateway's is the only way in.
    const mounted = await post('/api/auth/two-factor/enable', { password: user.password }, user.token);
    expect(mounted.statusCode).toBe(404);
  });

  it('login answers twoFactorRequired with a challenge and no token; the code completes it once', async () => {
    const { user, totp } = await enrolled();
    const res = await login(user);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(Object.keys(body).sort()).toEqual(['challengeToken', 'success', 'twoFactorRequired']);
    expect(body.twoFactorRequired).toBe(true);
    // The challenge is no bearer token.
    const asBearer = await t.app.inject({ url: '/auth/session', headers: bearer(body.challengeToken) });
    expect(asBearer.statusCode).toBe(401);

    const ok = await verify(body.challengeToken, nextCode(totp));
    expect(ok.statusCode).toBe(200);
    expect(Object.keys(ok.json()).sort()).toEqual(['success', 'token', 'userId']);
    expect(ok.json().userId).toBe(user.userId);
    const session = await t.app.inject({ url: '/auth/session', headers: bearer(ok.json().token) });
    expect(session.statusCode).toBe(200);

    const replay = await verify(body.challengeToken, totp.generate());
    expect(replay.statusCode).toBe(401);
    expect(replay.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');

    const { rows } = await t.db.query<{ event: string; details: Record<string, unknown> }>(
      `SELECT event, details FROM auth_audit_log WHERE user_id = $1 ORDER BY id`,
      [user.userId],
    );
    expect(rows.map((r) => r.event)).toEqual(expect.arrayContaining(['twofactor.enabled', 'twofactor.used']));
    expect(rows.at(-1)).toMatchObject({ event: 'login.success', details: { secondFactor: 'totp' } });
  });

  it('a tampered, expired or foreign challenge is refused', async () => {
    const { user, totp } = await enrolled();
    const c = await challenge(user);
    const tampered = await verify(`${c.slice(0, -3)}AA=`, totp.generate());
    expect(tampered.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');
    const made = await verify('2fa-abcdefghijklmnopqrst.forged', totp.generate());
    expect(made.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');

    await t.db.query(`UPDATE verification_tokens SET expires_at = now() - interval '1 second'`);
    const expired = await verify(c, totp.generate());
    expect(expired.statusCode).toBe(401);
    expect(expired.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');

    // Another user's code does not complete this user's login.
    const other = await enrolled();
    const c2 = await challenge(user);
    const foreign = await verify(c2, other.totp.generate());
    expect(foreign.statusCode).toBe(401);
  });

  // Regression: the sign-in's second step went through Better Auth's verifyTOTP, which ignores last_used_step, so one
  // code (seen in transit, or used for a re-authentication) completed any number of sign-ins within its 90 s.
  it('a TOTP code completes one sign-in: the same code on another challenge is a wrong code', async () => {
    const { user, totp } = await enrolled();
    const code = nextCode(totp);
    const [first, second] = [await challenge(user), await challenge(user)];
    expect((await verify(first, code)).statusCode).toBe(200);
    const replay = await verify(second, code);
    expect(replay.statusCode).toBe(401);
    expect(replay.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    // A code used to sign in does not re-authenticate either (X-2FA-Code shares the account's last used step).
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 hour' WHERE user_id = $1`, [user.userId]);
    const reauth = await t.app.inject({
      method: 'POST',
      url: '/auth/account/delete',
      headers: { ...bearer(user.token), 'x-2fa-code': code },
    });
    expect(reauth.statusCode).toBe(401);
    expect(reauth.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');

    // Parallel: one fresh code on five challenges signs in once.
    await t.db.query('UPDATE two_factor SET last_used_step = NULL, failed_verification_count = 0 WHERE user_id = $1', [
      user.userId,
    ]);
    const challenges = await Promise.all(Array.from({ length: 5 }, () => challenge(user)));
    const fresh = totp.generate();
    const results = await Promise.all(challenges.map((c) => verify(c, fresh)));
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(results.filter((r) => r.statusCode === 401).map((r) => r.json().error.code)).toEqual(
      Array(4).fill('TWO_FACTOR_INVALID_CODE'),
    );
  });

  // Regression: an account disabled between the password and the code got 400 BAD_REQUEST, audited as a wrong code,
  // where /auth/login answers 403 ACCOUNT_DISABLED and records login.failure. Both verify routes now do the same.
  it('an account disabled while its code was pending: 403 ACCOUNT_DISABLED, recorded as a refused sign-in', async () => {
    /** Sign in with the password, disable the account, then send the right code: through our route or Better Auth's. */
    const refusedAfterCode = async (route: 'ours' | 'better-auth') => {
      const { user, totp } = await enrolled();
      let send: (code: string) => Promise<{ statusCode: number; code: unknown }>;
      if (route === 'ours') {
        const challengeToken = await challenge(user);
        send = async (code) => {
          const res = await verify(challengeToken, code);
          return { statusCode: res.statusCode, code: res.json().error?.code };
        };
      } else {
        const signIn = await t.app.inject({
          method: 'POST',
          url: '/api/auth/sign-in/email',
          headers: { 'content-type': 'application/json', origin: 'http://localhost:3000' },
          payload: JSON.stringify({ email: user.email, password: user.password }),
        });
        const cookie = ([] as string[])
          .concat(signIn.headers['set-cookie'] ?? [])
          .map((c) => c.split(';')[0] as string)
          .find((c) => c.startsWith('better-auth.two_factor=')) as string;
        send = async (code) => {
          const res = await t.app.inject({
            method: 'POST',
            url: '/api/auth/two-factor/verify-totp',
            headers: { cookie, 'content-type': 'application/json', origin: 'http://localhost:3000' },
            payload: JSON.stringify({ code }),
          });
          return { statusCode: res.statusCode, code: res.json().code };
        };
      }
      await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
      expect(await send(nextCode(totp))).toEqual({ statusCode: 403, code: 'ACCOUNT_DISABLED' });
      const { rows } = await t.db.query<{ event: string; details: { reason?: string } }>(
        `SELECT event, details FROM auth_audit_log WHERE user_id = $1 AND event IN ('login.failure', 'twofactor.failed')`,
        [user.userId],
      );
      expect(rows.map((r) => [r.event, r.details.reason])).toEqual([['login.failure', 'ACCOUNT_DISABLED']]);
      // Only the registration's session: the refused sign-in made none.
      expect((await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId])).rows).toHaveLength(1);
    };
    await refusedAfterCode('ours');
    await refusedAfterCode('better-auth');
  });

  // Regression: Better Auth's own verify-totp route (served at /api/auth) accepted a code as often as it stayed valid.
  it("Better Auth's verify-totp route accepts each code once too, and shares the record with /auth/2fa/verify", async () => {
    const { user, totp } = await enrolled();
    const code = nextCode(totp);
    const [first, second] = [await challengeCookie(user), await challengeCookie(user)];
    expect((await verifyThere(first, code)).statusCode).toBe(200);
    const replay = await verifyThere(second, code);
    expect(replay.statusCode).toBe(401);
    // Better Auth's own route answers in Better Auth's format, as for any wrong code there.
    expect(replay.json()).toEqual({ code: 'INVALID_CODE', message: 'Invalid code' });
    // A code used on the gateway's route is used here too.
    await t.db.query('UPDATE two_factor SET last_used_step = NULL, failed_verification_count = 0 WHERE user_id = $1', [
      user.userId,
    ]);
    const fresh = totp.generate();
    expect((await verify(await challenge(user), fresh)).statusCode).toBe(200);
    expect((await verifyThere(await challengeCookie(user), fresh)).json().code).toBe('INVALID_CODE');
  });

  // Regression: a challenge cookie that is not valid percent-encoding made decodeURIComponent throw (500).
  it('a malformed challenge cookie is an invalid challenge, not a server error', async () => {
    for (const cookie of ['better-auth.two_factor=%E0%A4%A', '__Secure-better-auth.two_factor=%']) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/2fa/verify',
        payload: { code: '123456' },
        headers: { cookie },
      });
      expect(res.statusCode, cookie).toBe(401);
      expect(res.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');
    }
  });

  it('parallel uses of one challenge with the right code: exactly one session', async () => {
    const { user, totp } = await enrolled();
    const c = await challenge(user);
    const { rows: before } = await t.db.query('SELECT id FROM sessions WHERE user_id = $1', [user.userId]);
    const code = nextCode(totp);
    const results = await Promise.all(Array.from({ length: 10 }, () => verify(c, code)));
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
    const { rows: after } = await t.db.query('SELECT id FROM sessions WHERE user_id = $1', [user.userId]);
    expect(after.length - before.length).toBe(1);
  });

  it('backup codes complete a login once each', async () => {
    const { user, backupCodes } = await enrolled();
    const code = backupCodes[0] as string;
    const ok = await verify(await challenge(user), code);
    expect(ok.statusCode).toBe(200);
    expect(ok.json().token).toMatch(/^eyJ/);
    const reused = await verify(await challenge(user), code);
    expect(reused.statusCode).toBe(401);
    expect(reused.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    expect((await verify(await challenge(user), backupCodes[1] as string)).statusCode).toBe(200);
  });

  it('wrong codes: the 6th try on one challenge voids it (429), 10 in a row lock the account (429)', async () => {
    const { user, totp } = await enrolled();
    const c = await challenge(user);
    for (let i = 0; i < 5; i++) {
      const r = await verify(c, wrongCode(totp));
      expect(r.statusCode).toBe(401);
      expect(r.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    }
    const sixth = await verify(c, nextCode(totp));
    expect(sixth.statusCode).toBe(429);
    expect(sixth.json().error.code).toBe('TWO_FACTOR_LOCKED');
    expect(sixth.headers['retry-after']).toBeUndefined(); // the account is not locked: nothing to wait for
    const after = await verify(c, totp.generate());
    expect(after.statusCode).toBe(401);
    expect(after.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');

    // A new login: 5 more wrong codes reach the account threshold (10); even the right code is then refused.
    const c2 = await challenge(user);
    for (let i = 0; i < 5; i++) await verify(c2, wrongCode(totp));
    const c3 = await challenge(user);
    const locked = await verify(c3, totp.generate());
    expect(locked.statusCode).toBe(429);
    expect(locked.json().error.code).toBe('TWO_FACTOR_LOCKED');

    // Once the lock has run out, the right code works again. (The step the 6th try used is forgotten too: each step's
    // code works once, and this test does not wait for the next one.)
    await t.db.query(
      `UPDATE two_factor SET locked_until = now() - interval '1 second', last_used_step = NULL WHERE user_id = $1`,
      [user.userId],
    );
    expect((await verify(await challenge(user), totp.generate())).statusCode).toBe(200);
    const { rows } = await t.db.query<{ event: string }>(
      `SELECT event FROM auth_audit_log WHERE user_id = $1 AND event IN ('twofactor.failed', 'lockout')`,
      [user.userId],
    );
    expect(rows.filter((r) => r.event === 'twofactor.failed').length).toBeGreaterThanOrEqual(10);
    expect(rows.some((r) => r.event === 'lockout')).toBe(true);
  });

  // Regression: a wrong code on a spent challenge at Better Auth's verify routes answered 429 ACCOUNT_TEMPORARILY_LOCKED
  // (an account lock, wait) where Better Auth answers 400 TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE (sign in again).
  it("Better Auth's verify routes: the 6th wrong code on one challenge is Better Auth's TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE", async () => {
    for (const [route, wrong] of [
      ['verify-totp', wrongCode],
      ['verify-backup-code', () => 'wrong-00000'],
    ] as const) {
      const { user, totp } = await enrolled();
      const cookie = await challengeCookie(user);
      for (let i = 0; i < 5; i++) expect((await verifyThere(cookie, wrong(totp), route)).statusCode, route).toBe(401);
      const sixth = await verifyThere(cookie, wrong(totp), route);
      const { rows } = await t.db.query<{ locked: boolean }>(
        'SELECT coalesce(locked_until > now(), false) AS locked FROM two_factor WHERE user_id = $1',
        [user.userId],
      );
      expect(rows[0]?.locked, route).toBe(false); // 6 wrong codes of lockout_threshold (10)
      expect([sixth.statusCode, sixth.json().code], route).toEqual([400, 'TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE']);
      expect(sixth.headers['retry-after'], route).toBeUndefined();
      // The challenge is spent; a new sign-in works at once.
      expect((await verifyThere(cookie, wrong(totp), route)).statusCode, route).toBe(401);
      expect((await verifyThere(await challengeCookie(user), nextCode(totp))).statusCode, route).toBe(200);
    }
  });

  // Regression: a locked account's 2FA was refused with 429 and no Retry-After on every sign-in verify route.
  it('a locked account: 429 with Retry-After (the seconds left on the lock) on every sign-in verify route', async () => {
    const { user, totp } = await enrolled();
    // Locked as lockout_threshold wrong codes leave it, 600 of lockout_duration's seconds left.
    await t.db.query(
      `UPDATE two_factor SET failed_verification_count = 10, locked_until = now() + interval '600 seconds'
        WHERE user_id = $1`,
      [user.userId],
    );
    const answers = [
      await verify(await challenge(user), nextCode(totp)),
      await verifyThere(await challengeCookie(user), nextCode(totp)),
      await verifyThere(await challengeCookie(user), 'AAAAA-BBBBB', 'verify-backup-code'),
    ];
    for (const res of answers) {
      expect([res.statusCode, res.json().error?.code ?? res.json().code], res.body).toEqual([
        429,
        res.json().error ? 'TWO_FACTOR_LOCKED' : 'ACCOUNT_TEMPORARILY_LOCKED',
      ]);
      const retryAfter = Number(res.headers['retry-after']);
      expect(retryAfter, res.body).toBeGreaterThan(590);
      expect(retryAfter, res.body).toBeLessThanOrEqual(600);
    }
  });

  // Regression: the lock was read before a code was compared and the failure written after, so every guess already in
  // flight was compared: 30 guesses at once on 30 challenges were 30 guesses, whatever lockout_threshold said.
  it('a burst of wrong codes at once: at most lockout_threshold are compared, on every sign-in route', async () => {
    const threshold = t.config.auth.two_factor.lockout_threshold;
    const burst = 30;
    /** A 6-digit code valid at no moment near now, different for each i. */
    const guess = (totp: OTPAuth.TOTP, i: number) => {
      const near = new Set([-1, 0, 1].map((d) => totp.generate({ timestamp: Date.now() + d * 30_000 })));
      let code = totp.generate({ timestamp: Date.now() + 600_000 + i * 30_000 });
      while (near.has(code)) code = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
      return code;
    };
    /** Sends the burst at once; each answer's code (ours, or Better Auth's own on its route). */
    const sendAll = async (send: (i: number) => Promise<{ json(): { error?: { code?: string }; code?: string } }>) =>
      (await Promise.all(Array.from({ length: burst }, (_, i) => send(i)))).map(
        (r) => r.json().error?.code ?? r.json().code,
      );
    const compared = ['TWO_FACTOR_INVALID_CODE', 'INVALID_CODE', 'INVALID_BACKUP_CODE'];
    const expectCapped = async (user: User, totp: OTPAuth.TOTP, answers: Array<string | undefined>) => {
      expect(answers.filter((a) => compared.includes(a ?? '')).length).toBeLessThanOrEqual(threshold);
      // The rest were refused unseen (Better Auth's route says so in its own words), and the account is locked: the
      // right code too is refused.
      const locked = new Set(answers.filter((a) => !compared.includes(a ?? '')));
      expect([...locked].every((a) => a === 'TWO_FACTOR_LOCKED' || a === 'ACCOUNT_TEMPORARILY_LOCKED')).toBe(true);
      expect(locked.size).toBe(1);
      const { rows } = await t.db.query<{ n: number }>(
        'SELECT failed_verification_count AS n FROM two_factor WHERE user_id = $1',
        [user.userId],
      );
      expect(rows[0]?.n).toBeLessThanOrEqual(threshold);
      const right = await verify(await challenge(user), nextCode(totp));
      expect(right.json().error.code).toBe('TWO_FACTOR_LOCKED');
    };

    // One challenge per guess (a challenge allows 5): TOTP and backup-code guesses, on /auth/2fa/verify and on
    // Better Auth's own routes (served at /api/auth, where the challenge is a cookie).
    const backupGuess = (i: number) => `wrong-${String(i).padStart(5, '0')}`;
    const cases: Array<{
      challengeOf: (user: User) => Promise<string>;
      send: (challenge: string, i: number, totp: OTPAuth.TOTP) => ReturnType<typeof verify>;
    }> = [
      { challengeOf: challenge, send: (c, i, totp) => verify(c, guess(totp, i)) },
      { challengeOf: challenge, send: (c, i) => verify(c, backupGuess(i)) },
      { challengeOf: challengeCookie, send: (c, i, totp) => verifyThere(c, guess(totp, i)) },
      { challengeOf: challengeCookie, send: (c, i) => verifyThere(c, backupGuess(i), 'verify-backup-code') },
    ];
    for (const { challengeOf, send } of cases) {
      const { user, totp } = await enrolled();
      const challenges: string[] = [];
      for (let i = 0; i < burst; i++) challenges.push(await challengeOf(user));
      await expectCapped(user, totp, await sendAll((i) => send(challenges[i] as string, i, totp)));
    }
  });

  it("Better Auth's own sign-in gives the challenge as a cookie; /auth/2fa/verify takes it", async () => {
    const { user, totp } = await enrolled();
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().twoFactorRedirect).toBe(true);
    expect(res.headers['x-auth-token']).toBeUndefined();
    const cookie = ([] as string[])
      .concat(res.headers['set-cookie'] ?? [])
      .find((c) => c.startsWith('better-auth.two_factor='));
    expect(cookie).toBeDefined();
    const ok = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/verify',
      payload: { code: nextCode(totp) },
      headers: { cookie: (cookie as string).split(';')[0] as string },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().userId).toBe(user.userId);
  });

  it('disable: with a code at once; with the password only after a recent sign-in', async () => {
    const { user, totp, backupCodes } = await enrolled();
    // Signed in with a backup code: the TOTP steps stay for the disabling below.
    const signedIn = (await verify(await challenge(user), backupCodes[0] as string)).json().token as string;
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 hour' WHERE user_id = $1`, [user.userId]);

    const stale = await post('/auth/2fa/disable', { password: user.password }, signedIn);
    expect(stale.statusCode).toBe(403);
    expect(stale.json().error.code).toBe('REAUTH_REQUIRED');
    const wrong = await post('/auth/2fa/disable', { code: wrongCode(totp) }, signedIn);
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
    const empty = await post('/auth/2fa/disable', {}, signedIn);
    expect(empty.statusCode).toBe(400);

    // The next time step's code: this step's was used by the confirmation (each is accepted once).
    const ok = await post('/auth/2fa/disable', { code: totp.generate({ timestamp: Date.now() + 30_000 }) }, signedIn);
    expect(ok.statusCode).toBe(200);
    expect((await login(user)).json().token).toMatch(/^eyJ/);
    const { rows } = await t.db.query('SELECT 1 FROM two_factor WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);

    // Password path: a fresh session may disable with the password.
    const second = await enrolled();
    const fresh = await post('/auth/2fa/disable', { password: second.user.password }, second.user.token);
    expect(fresh.statusCode).toBe(200);
  });

  it('a device marked trusted (after a recent sign-in) skips the prompt on /auth/login until its trust ends', async () => {
    const { user, totp } = await enrolled();
    const loginFrom = (key?: string) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/login',
        headers: key ? { 'x-device-id': key } : {},
        payload: { email: user.email, password: user.password },
      });
    // The first sign-in on this device takes the code; the device key comes back with the challenge.
    const first = await loginFrom();
    const key = String(first.headers['x-device-id']);
    const signedIn = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/verify',
      headers: { 'x-device-id': key },
      payload: { challengeToken: first.json().challengeToken, code: nextCode(totp) },
    });
    expect(signedIn.statusCode).toBe(200);
    const token = signedIn.json().token as string;
    const deviceId = await currentDeviceId(token);
    const trust = (as: string, trusted: boolean) => setTrust(as, deviceId, trusted);

    // Trust takes a recent sign-in: the registration session, made to look a day old, is refused.
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 day' WHERE user_id = $1 AND id <> $2`, [
      user.userId,
      sessionIdOf(token),
    ]);
    const stale = await trust(user.token, true);
    expect(stale.statusCode).toBe(403);
    expect(stale.json().error.code).toBe('REAUTH_REQUIRED');
    expect((await trust(token, true)).json().device).toMatchObject({ id: deviceId, trusted: true });

    // From the trusted device: a token at once, and the audit row says why no code was asked.
    const trustedLogin = await loginFrom(key);
    expect(Object.keys(trustedLogin.json()).sort()).toEqual(['success', 'token', 'userId']);
    const { rows } = await t.db.query(
      `SELECT details FROM auth_audit_log WHERE event = 'login.success' AND session_id = $1`,
      [sessionIdOf(trustedLogin.json().token)],
    );
    expect(rows).toEqual([{ details: { method: 'password', trustedDevice: true } }]);
    // Without the key, with a key one character off, or after the trust ends: the code again.
    expect((await loginFrom()).json().twoFactorRequired).toBe(true);
    const near = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    expect((await loginFrom(near)).json().twoFactorRequired).toBe(true);
    await t.db.query(`UPDATE devices SET trusted_until = now() - interval '1 second' WHERE id = $1`, [deviceId]);
    expect((await loginFrom(key)).json().twoFactorRequired).toBe(true);
    expect((await trust(token, true)).statusCode).toBe(200);
    expect((await loginFrom(key)).json().token).toMatch(/^eyJ/);
    expect((await trust(user.token, false)).json().device).toMatchObject({ trusted: false }); // withdrawing: no reauth
    expect((await loginFrom(key)).json().twoFactorRequired).toBe(true);
  });

  it("Better Auth's own trust-device cookie is neither handed out nor honoured through /api/auth/*", async () => {
    const { user, totp } = await enrolled();
    const signIn = (cookie?: string) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        payload: { email: user.email, password: user.password },
        headers: { origin: 'http://localhost:3000', ...(cookie ? { cookie } : {}) },
      });
    const challenge = ([] as string[])
      .concat((await signIn()).headers['set-cookie'] ?? [])
      .find((c) => c.startsWith('better-auth.two_factor='))
      ?.split(';')[0] as string;
    // Asked through the mount, Better Auth's verification may not hand out its cookie...
    const verified = await t.app.inject({
      method: 'POST',
      url: '/api/auth/two-factor/verify-totp',
      payload: { code: nextCode(totp), trustDevice: true }, // the confirmation used this step's code
      headers: { cookie: challenge, origin: 'http://localhost:3000' },
    });
    expect(verified.statusCode).toBe(200);
    const handedOut = ([] as string[]).concat(verified.headers['set-cookie'] ?? []);
    expect(handedOut.some((c) => c.includes('trust_device'))).toBe(false);

    // ...and one minted by Better Auth itself (called directly, not through the gateway) is not honoured.
    const direct = await t.app.engine.handle(
      new Request('http://localhost:3000/api/auth/sign-in/email', {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin: 'http://localhost:3000' },
        body: JSON.stringify({ email: user.email, password: user.password }),
      }),
    );
    const directChallenge = direct.headers
      .getSetCookie()
      .find((c) => c.startsWith('better-auth.two_factor='))
      ?.split(';')[0] as string;
    const trusted = await t.app.engine.handle(
      new Request('http://localhost:3000/api/auth/two-factor/verify-totp', {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin: 'http://localhost:3000', cookie: directChallenge },
        body: JSON.stringify({ code: totp.generate({ timestamp: Date.now() + 30_000 }), trustDevice: true }),
      }),
    );
    const trustCookie = trusted.headers
      .getSetCookie()
      .find((c) => c.startsWith('better-auth.trust_device='))
      ?.split(';')[0];
    expect(trustCookie).toBeDefined();
    const spellings = [trustCookie, trustCookie?.replace('=', ' ='), `x=1;\t${trustCookie?.replace('=', '\t=')}`];
    for (const cookie of spellings) expect((await signIn(cookie)).json().twoFactorRedirect).toBe(true);
  });

  it('trust does not outlive a change of credentials: two-factor turned on, a new password', async () => {
    const user = await registerUser(t.app);
    const login = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    const key = String(login.headers['x-device-id']);
    const token = login.json().token as string;
    const deviceId = await currentDeviceId(token);
    const trusted = async () =>
      (await t.db.query('SELECT trusted_until IS NOT NULL AS t FROM devices WHERE id = $1', [deviceId])).rows[0]?.t;
    const trust = () => setTrust(token, deviceId, true);

    // Trusted while only the password guarded the account (a fresh sign-in is all that took)...
    expect((await trust()).statusCode).toBe(200);
    const enable = await post('/auth/2fa/enable', { password: user.password }, token);
    const totp = OTPAuth.URI.parse(enable.json().otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, token)).statusCode).toBe(200);
    // ...is withdrawn when 2FA is turned on: password and key are not enough.
    expect(await trusted()).toBe(false);
    const withKey = () =>
      t.app.inject({
        method: 'POST',
        url: '/auth/login',
        headers: { 'x-device-id': key },
        payload: { email: user.email, password: user.password },
      });
    expect((await withKey()).json().twoFactorRequired).toBe(true);

    // Trusted again under 2FA, then the password changes: withdrawn.
    expect((await trust()).statusCode).toBe(200);
    expect((await withKey()).json().token).toMatch(/^eyJ/);
    const changed = await t.app.inject({
      method: 'POST',
      url: '/auth/password/change',
      headers: bearer(token),
      payload: { currentPassword: user.password, newPassword: 'AnotherPassword456!' },
    });
    expect(changed.statusCode).toBe(200);
    expect(await trusted()).toBe(false);
  });

  // Regression: over plain http the device cookie became a device header only on the paths that create a session, and
  // Better Auth's own 2FA second step was not one of them: its session was filed under no device.
  it("files the session Better Auth's verify-totp and verify-backup-code create under the browser's device", async () => {
    const { user, totp, backupCodes } = await enrolled();
    const cookiesOf = (res: { headers: Record<string, unknown> }) =>
      ([] as string[])
        .concat((res.headers['set-cookie'] as string[] | string | undefined) ?? [])
        .map((c) => c.split(';')[0] as string);
    for (const [route, code] of [
      ['verify-totp', nextCode(totp)],
      ['verify-backup-code', backupCodes[0] as string],
    ] as const) {
      const signIn = await post('/api/auth/sign-in/email', { email: user.email, password: user.password });
      expect(signIn.json().twoFactorRedirect).toBe(true);
      const cookies = cookiesOf(signIn);
      const device = cookies.find((c) => c.startsWith('gateway_device=')) as string;
      const pending = cookies.find((c) => c.startsWith('better-auth.two_factor=')) as string;
      expect(device).toBeDefined();
      const done = await verifyThere(`${pending}; ${device}`, code, route);
      expect(done.statusCode, route).toBe(200);
      const { rows } = await t.db.query<{ key_hash: string | null }>(
        'SELECT d.key_hash FROM sessions s LEFT JOIN devices d ON d.id = s.device_id WHERE s.id = $1',
        [sessionIdOf(done.headers['x-auth-token'] as string)],
      );
      const key = device.slice('gateway_device='.length);
      expect(rows[0]?.key_hash, route).toBe(createHash('sha256').update(key).digest('hex'));
      expect(cookiesOf(done), route).toContain(device); // its answer carries the device back, as other sign-ins do
    }
  });

  it("Better Auth's own 2FA routes serve the challenge only, audited like /auth/2fa/verify", async () => {
    const { user, totp } = await enrolled();
    const lastId = async () =>
      Number((await t.db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM auth_audit_log')).rows[0]?.id);
    const since = async (id: number) =>
      (
        await t.db.query<{ event: string; user_id: string | null; session_id: string | null; details: object }>(
          'SELECT event, user_id, session_id, details FROM auth_audit_log WHERE id > $1 ORDER BY id',
          [id],
        )
      ).rows;

    // The password sign-in answers the challenge: no sign-in yet, so no login.success (it used to be one, of nobody).
    let mark = await lastId();
    const signIn = await post('/api/auth/sign-in/email', { email: user.email, password: user.password });
    expect(signIn.json().twoFactorRedirect).toBe(true);
    expect(await since(mark)).toEqual([]);
    const cookie = ([] as string[])
      .concat(signIn.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .find((c) => c.startsWith('better-auth.two_factor='));
    expect(cookie).toBeDefined();
    const code = (value: string, headers: Record<string, string> = {}) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/two-factor/verify-totp',
        headers: { cookie: cookie as string, origin: 'http://localhost:3000', ...headers },
        payload: { code: value },
      });

    // The cookie's value quoted, as Better Auth's parser accepts it: still the user's challenge.
    const [name, value] = (cookie as string).split('=') as [string, string];
    mark = await lastId();
    expect((await code(wrongCode(totp), { cookie: `${name}="${value}"` })).statusCode).toBe(401);
    expect(await since(mark)).toEqual([
      expect.objectContaining({ event: 'twofactor.failed', user_id: user.userId, details: expect.any(Object) }),
    ]);

    // Another user's session sent along is not passed on: the challenge alone decides whose sign-in this is.
    const other = await registerUser(t.app);
    mark = await lastId();
    // The confirmation used this step's code: each step's is accepted once, on this route too.
    const done = await code(nextCode(totp), { authorization: `Bearer ${other.token}` });
    expect(done.statusCode).toBe(200);
    const sid = sessionIdOf(done.headers['x-auth-token'] as string);
    expect(await since(mark)).toEqual([
      expect.objectContaining({ event: 'twofactor.used', user_id: user.userId, session_id: sid }),
      {
        event: 'login.success',
        user_id: user.userId,
        session_id: sid,
        details: { method: 'password', secondFactor: 'totp', api: 'better-auth' },
      },
    ]);

    // Without a challenge the route does nothing for a session: Better Auth would confirm a pending enrolment with
    // it (ours is /auth/2fa/confirm, audited) and check codes without the lockout.
    const pending = await post('/auth/2fa/enable', { password: other.password }, other.token);
    const otherTotp = OTPAuth.URI.parse(pending.json().otpauthUri) as OTPAuth.TOTP;
    mark = await lastId();
    const confirm = await post('/api/auth/two-factor/verify-totp', { code: otherTotp.generate() }, other.token);
    expect(confirm.statusCode).toBe(401);
    expect(await since(mark)).toEqual([]);
    const { rows } = await t.db.query('SELECT verified FROM two_factor WHERE user_id = $1', [other.userId]);
    expect(rows).toEqual([{ verified: false }]);
  });
});
