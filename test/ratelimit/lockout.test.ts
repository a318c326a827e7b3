import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

const ORIGIN = 'http://localhost:3000';

describe('per-account lockout (memory counters)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        lockout: { max_failures: 3, base_lockout: 60, factor: 2, max_lockout: 300 },
        rate_limit: { enabled: false },
      },
    });
  });
  afterAll(() => t?.close());

  let ip = 0;
  const login = (email: string, password: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/login',
      remoteAddress: `10.0.${Math.floor(++ip / 250)}.${(ip % 250) + 1}`, // a new IP each time: the lock is per account
      payload: { email, password },
    });
  const auditRows = async (event: string, userId?: string) =>
    (
      await t.db.query<{ user_id: string | null; details: Record<string, unknown> }>(
        `SELECT user_id, details FROM auth_audit_log WHERE event = $1 ${userId ? 'AND user_id = $2' : ''} ORDER BY id`,
        userId ? [event, userId] : [event],
      )
    ).rows;

  it('locks after max_failures from different IPs and spellings; even the right password gets 429 then', async () => {
    const user = await registerUser(t.app, { email: 'lock.me@example.com' });
    expect((await login('lock.me@example.com', 'wrong-password-1')).statusCode).toBe(401);
    expect((await login('  LOCK.me@Example.COM ', 'wrong-password-2')).statusCode).toBe(401);
    expect((await login('Lock.Me@example.com', 'wrong-password-3')).statusCode).toBe(401);
    const locked = await login('lock.me@example.com', user.password);
    expect(locked.statusCode).toBe(429);
    expect(locked.json().error.code).toBe('ACCOUNT_LOCKED');
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(50);
    expect(Number(locked.headers['retry-after'])).toBeLessThanOrEqual(60);

    const lockouts = await auditRows('lockout', user.userId);
    expect(lockouts).toHaveLength(1);
    expect(lockouts[0]?.details).toMatchObject({ failures: 3, lockedSeconds: 60 });
    const failures = await auditRows('login.failure');
    expect(failures.length).toBeGreaterThanOrEqual(3);
  });

  it('throttles unknown emails the same way, with the same answers', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await login('nobody.here@example.com', `guess-${i}`)).statusCode);
    expect(statuses).toEqual([401, 401, 401]);
    const locked = await login('nobody.here@example.com', 'guess-4');
    expect(locked.statusCode).toBe(429);
    expect(locked.json()).toEqual({
      success: false,
      error: { code: 'ACCOUNT_LOCKED', message: 'Too many failed sign-ins for this account; try again later.' },
    });
  });

  it('a successful login resets the count', async () => {
    const user = await registerUser(t.app);
    expect((await login(user.email, 'wrong-1')).statusCode).toBe(401);
    expect((await login(user.email, 'wrong-2')).statusCode).toBe(401);
    expect((await login(user.email, user.password)).statusCode).toBe(200);
    expect((await login(user.email, 'wrong-3')).statusCode).toBe(401);
    expect((await login(user.email, 'wrong-4')).statusCode).toBe(401);
    expect((await login(user.email, user.password)).statusCode).toBe(200);
  });

  it('20 parallel wrong passwords: at most max_failures reach the hasher, the rest get 429', async () => {
    const user = await registerUser(t.app);
    const verify = t.app.hasher.verify;
    let verified = 0;
    (t.app.hasher as { verify: typeof verify }).verify = (hash, password) => {
      verified++;
      return verify(hash, password);
    };
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => login(user.email, `parallel-${i}`)));
      const codes = results.map((r) => r.statusCode);
      expect(verified).toBeLessThanOrEqual(3);
      expect(codes.filter((c) => c === 401).length).toBeLessThanOrEqual(3);
      expect(codes.filter((c) => c === 429)).toHaveLength(20 - codes.filter((c) => c === 401).length);
      expect(results.filter((r) => r.statusCode === 429).every((r) => r.headers['retry-after'])).toBe(true);
    } finally {
      (t.app.hasher as { verify: typeof verify }).verify = verify;
    }
  });

  it("Better Auth's /api/auth/sign-in/email shares the account's count, and is audited", async () => {
    const user = await registerUser(t.app);
    const apiSignIn = (password: string) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        headers: { origin: ORIGIN, 'content-type': 'application/json' },
        payload: JSON.stringify({ email: user.email.toUpperCase(), password }),
      });
    const ok = await apiSignIn(user.password);
    expect(ok.statusCode).toBe(200);
    const success = await t.db.query<{ session_id: string | null; details: Record<string, unknown> }>(
      `SELECT session_id, details FROM auth_audit_log WHERE event = 'login.success' AND user_id = $1`,
      [user.userId],
    );
    expect(success.rows).toHaveLength(1);
    expect(success.rows[0]?.session_id).toMatch(/\S/);
    expect(success.rows[0]?.details).toMatchObject({ method: 'password', api: 'better-auth' });

    expect((await apiSignIn('wrong-api-1')).statusCode).toBe(401);
    expect((await login(user.email, 'wrong-rest-2')).statusCode).toBe(401);
    expect((await apiSignIn('wrong-api-3')).statusCode).toBe(401);
    const locked = await apiSignIn(user.password);
    expect(locked.statusCode).toBe(429);
    expect(locked.json().error.code).toBe('ACCOUNT_LOCKED');
    expect((await login(user.email, user.password)).statusCode).toBe(429);
    expect(await auditRows('lockout', user.userId)).toHaveLength(1);
  });

  it("a refusal of Better Auth's sign-in by the sign-in guard is a login.failure with its code", async () => {
    const user = await registerUser(t.app);
    const mark = Number(
      (await t.db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM auth_audit_log')).rows[0]?.id,
    );
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: ORIGIN },
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(403);
    const { rows } = await t.db.query<{ details: object }>(
      `SELECT details FROM auth_audit_log WHERE id > $1 AND event = 'login.failure'`,
      [mark],
    );
    expect(rows).toEqual([{ details: { method: 'password', api: 'better-auth', reason: 'ACCOUNT_DISABLED' } }]);
  });

  it("what Better Auth's sign-in refuses before any password check is no failed sign-in", async () => {
    const user = await registerUser(t.app);
    const mark = Number(
      (await t.db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM auth_audit_log')).rows[0]?.id,
    );
    const apiSignIn = (payload: object, headers: Record<string, string> = {}) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        headers: { origin: ORIGIN, ...headers },
        payload,
      });
    // A bad bearer sent along (the mount refuses it: 401 INVALID_TOKEN), more times than max_failures...
    for (let i = 0; i < 4; i++) {
      const res = await apiSignIn({ email: user.email, password: user.password }, { authorization: 'Bearer a.b.c' });
      expect(res.statusCode).toBe(401);
    }
    // ...and a malformed address (400).
    expect((await apiSignIn({ email: 'not-an-address', password: user.password })).statusCode).toBe(400);
    const { rows } = await t.db.query(`SELECT event FROM auth_audit_log WHERE id > $1 AND event LIKE 'login.%'`, [
      mark,
    ]);
    expect(rows).toEqual([]);
    // No lockout either: the right password still signs in.
    expect((await apiSignIn({ email: user.email, password: user.password })).statusCode).toBe(200);
  });

  it("Better Auth's sign-up is audited and sign-ins there are counted in /metrics", async () => {
    const email = 'api-signup@example.com';
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      headers: { origin: ORIGIN, 'content-type': 'application/json' },
      payload: JSON.stringify({ email, password: 'SecurePassword123!', name: 'A' }),
    });
    expect(res.statusCode).toBe(200);
    const { rows } = await t.db.query<{ user_id: string; session_id: string; details: object }>(
      `SELECT a.user_id, a.session_id, a.details FROM auth_audit_log a JOIN users u ON u.id = a.user_id
        WHERE a.event = 'signup' AND u.email = $1`,
      [email],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.session_id).toMatch(/\S/);
    expect(rows[0]?.details).toEqual({ method: 'password', api: 'better-auth' });
    const metrics = (await t.app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).body;
    expect(metrics).toMatch(
      /^gateway_login_attempts_total\{method="password",channel="rest",outcome="success"\} [1-9]/m,
    );
  });

  // Regression: Better Auth resolves dot segments; the lockout once matched the raw path and missed these.
  it('spellings of the sign-in path that Better Auth accepts share the lockout', async () => {
    const user = await registerUser(t.app);
    const codes = [];
    for (const url of ['/api/auth/./sign-in/email', '/api/auth/%2e/sign-in/email', '/api/auth/x/../sign-in/email']) {
      const res = await t.app.inject({
        method: 'POST',
        url,
        headers: { origin: ORIGIN, 'content-type': 'application/json' },
        payload: JSON.stringify({ email: user.email, password: 'wrong' }),
      });
      codes.push(res.statusCode);
    }
    expect(codes.slice(0, 3)).toEqual([401, 401, 401]);
    expect((await login(user.email, user.password)).statusCode).toBe(429);
  });

  // Regression: the lockout read Better Auth's body itself, not as better-call does (a form whenever the type merely
  // contained the form type; a repeated form field's first value), so wrong passwords were counted against a decoy.
  it('counts a Better Auth sign-in against the account Better Auth checks, however the body is spelled', async () => {
    const user = await registerUser(t.app);
    const apiSignIn = (contentType: string, payload: string) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        headers: { origin: ORIGIN, 'content-type': contentType },
        payload,
      });
    const codes = [
      // JSON to better-call (the type starts with application/json), a form with a decoy to a reader of "contains".
      await apiSignIn(
        'application/json; x=application/x-www-form-urlencoded',
        JSON.stringify({ email: user.email, password: 'wrong-1', x: '&email=decoy1@example.com&' }),
      ),
      await apiSignIn('application/x-www-form-urlencoded', `email=${encodeURIComponent(user.email)}&password=wrong-2`),
      // Duplicate JSON keys: the last one, for both (JSON.parse).
      await apiSignIn(
        'Application/JSON;charset=utf-8',
        `{"email":"decoy3@example.com","email":${JSON.stringify(user.email)},"password":"wrong-3"}`,
      ),
    ].map((r) => r.statusCode);
    expect(codes).toEqual([401, 401, 401]);
    expect((await login(user.email, user.password)).statusCode).toBe(429);
  });

  it('refuses Better Auth sign-in bodies that could be read two ways, before anything is counted or verified', async () => {
    const user = await registerUser(t.app);
    const email = encodeURIComponent(user.email);
    const verify = t.app.hasher.verify;
    let verified = 0;
    (t.app.hasher as { verify: typeof verify }).verify = (hash, password) => {
      verified++;
      return verify(hash, password);
    };
    try {
      for (const [contentType, payload, status, code] of [
        [
          'application/x-www-form-urlencoded',
          `email=decoy%40example.com&email=${email}&password=wrong`,
          400,
          'VALIDATION_FAILED',
        ],
        [
          'application/x-www-form-urlencoded',
          `email=${email}&password=wrong&email=decoy%40example.com`,
          400,
          'VALIDATION_FAILED',
        ],
        ['text/plain', JSON.stringify({ email: user.email, password: 'wrong' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['application/jsonx', JSON.stringify({ email: user.email, password: 'wrong' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['application/x-www-form-urlencoded+json', `email=${email}&password=wrong`, 415, 'UNSUPPORTED_MEDIA_TYPE'],
        [
          'multipart/form-data; boundary=b',
          `--b\r\ncontent-disposition: form-data; name="email"\r\n\r\n${user.email}\r\n--b--\r\n`,
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        ],
      ] as const) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/auth/sign-in/email',
          headers: { origin: ORIGIN, 'content-type': contentType },
          payload,
        });
        expect(res.statusCode, contentType).toBe(status);
        expect(res.json().error.code, contentType).toBe(code);
      }
      expect(verified).toBe(0);
    } finally {
      (t.app.hasher as { verify: typeof verify }).verify = verify;
    }
    // More refusals than max_failures, none of them counted: the right password still signs in.
    expect((await login(user.email, user.password)).statusCode).toBe(200);
  });

  it('a Better Auth sign-in body without an email is refused before anything is verified', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: ORIGIN, 'content-type': 'application/json' },
      payload: '{"password":"x"',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().success).toBe(false);
  });

  // Regression: Better Auth's route has no cap, and each distinct 60 KB email was kept as a lockout key for the
  // failure window (300 such requests: 300 keys of 60 KB in the counter store).
  it("an over-long email on Better Auth's sign-in is refused before a lockout key is kept", async () => {
    const email = `${'a'.repeat(60_000)}@example.com`;
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: ORIGIN },
      payload: { email, password: 'whatever-it-is' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('VALIDATION_FAILED');
    const at254 = `${'b'.repeat(254 - '@example.com'.length)}@example.com`;
    const ok = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: ORIGIN },
      payload: { email: at254, password: 'whatever-it-is' },
    });
    expect(ok.statusCode).toBe(401);
  });

  // Regression: Better Auth's sign-up took an email of any length (a 312-character one made an account), and both
  // sign-in routes refuse over 254: the account could never sign in.
  it("an over-long email on Better Auth's sign-up is refused as on sign-in", async () => {
    const tooLong = `${'c'.repeat(255 - '@example.com'.length)}@example.com`;
    const bodies = {
      'application/json': JSON.stringify({ email: tooLong, password: 'SecurePassword123!', name: 'Long' }),
      'application/x-www-form-urlencoded': new URLSearchParams({
        email: tooLong,
        password: 'SecurePassword123!',
        name: 'Long',
      }).toString(),
    };
    for (const [contentType, payload] of Object.entries(bodies)) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-up/email',
        headers: { origin: ORIGIN, 'content-type': contentType },
        payload,
      });
      expect(res.statusCode, contentType).toBe(400);
      expect(res.json(), contentType).toEqual({
        success: false,
        error: { code: 'VALIDATION_FAILED', message: 'email must be at most 254 characters', field: 'email' },
      });
    }
    const rows = await t.db.query('SELECT id FROM users WHERE email = $1', [tooLong]);
    expect(rows.rows).toHaveLength(0);

    // At the cap, the account signs up and then signs in on both routes.
    const at254 = `${'d'.repeat(254 - '@example.com'.length)}@example.com`;
    const password = 'SecurePassword123!';
    const up = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      headers: { origin: ORIGIN },
      payload: { email: at254, password, name: 'At the cap' },
    });
    expect(up.statusCode).toBe(200);
    const api = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: ORIGIN },
      payload: { email: at254, password },
    });
    expect(api.statusCode).toBe(200);
    expect((await login(at254, password)).statusCode).toBe(200);
  });
});
