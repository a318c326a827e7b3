import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RATE_LIMIT_RULES } from '../../src/config/schema.js';
import {
  createTestApp,
  createTestDatabase,
  registerUser,
  type TestApp,
  type TestDatabase,
} from '../helpers/test-app.js';

// One database for the file (each app below gets its own config on it): fewer embedded databases to start.
let shared: TestDatabase;
beforeAll(async () => {
  shared = await createTestDatabase();
});
afterAll(() => shared?.drop());

const rules = [
  { prefix: '/auth/', max: 100, window: 60 },
  { prefix: '/auth/login', max: 3, window: 60 },
  { prefix: '/auth/health', max: 0, window: 60 },
  { prefix: '/api/auth/', max: 100, window: 60 },
  { prefix: '/api/auth/sign-up/', max: 2, window: 3600 },
];
const wrong = { email: 'someone@example.com', password: 'not-the-password' };

describe('per-IP rate limits, socket address (trust_proxy: false)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      config: { rate_limit: { enabled: true, rules }, lockout: { max_failures: 1000 } },
    });
  });
  afterAll(() => t?.close());

  const login = (remoteAddress: string, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url: '/auth/login', remoteAddress, headers, payload: wrong });

  it('429 RATE_LIMITED with Retry-After over the limit; a spoofed X-Forwarded-For does not help', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await login('192.0.2.10', { 'x-forwarded-for': `198.51.100.${i}` })).statusCode).toBe(401);
    }
    const res = await login('192.0.2.10', { 'x-forwarded-for': '198.51.100.99' });
    expect(res.statusCode).toBe(429);
    expect(res.json().error.code).toBe('RATE_LIMITED');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await login('192.0.2.11')).statusCode).toBe(401); // another client is not affected
  });

  it('groups IPv6 clients by /64', async () => {
    for (let i = 1; i <= 3; i++) expect((await login(`2001:db8:aa:bb::${i}`)).statusCode).toBe(401);
    expect((await login('2001:db8:aa:bb:ffff:1:2:3')).statusCode).toBe(429);
    expect((await login('2001:db8:aa:bc::1')).statusCode).toBe(401);
  });

  it("covers Better Auth's routes by prefix, and exempts health", async () => {
    const signUp = (i: number) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-up/email',
        remoteAddress: '192.0.2.20',
        headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
        payload: JSON.stringify({ email: `rl${i}@example.com`, password: 'SecurePassword123!', name: 'x' }),
      });
    expect((await signUp(1)).statusCode).toBe(200);
    expect((await signUp(2)).statusCode).toBe(200);
    const third = await signUp(3);
    expect(third.statusCode).toBe(429);
    expect(third.json().error.code).toBe('RATE_LIMITED');
    for (let i = 0; i < 5; i++) {
      expect((await t.app.inject({ url: '/auth/health', remoteAddress: '192.0.2.20' })).statusCode).toBe(200);
    }
  });

  it('audits the first hit over a limit per window (not every refused request) and counts every one', async () => {
    const { rows } = await t.db.query<{ ip_address: string; details: Record<string, unknown> }>(
      `SELECT ip_address, details FROM auth_audit_log WHERE event = 'rate_limit.hit' ORDER BY id`,
    );
    expect(rows.map((r) => [r.ip_address, r.details.rule])).toEqual([
      ['192.0.2.10', '/auth/login'],
      ['2001:db8:aa:bb:ffff:1:2:3', '/auth/login'],
      ['192.0.2.20', '/api/auth/sign-up/'],
    ]);
    const metrics = await t.app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' });
    expect(metrics.body).toContain('gateway_rate_limited_total{rule="/auth/login"} 2');
    expect(metrics.body).toContain('gateway_rate_limited_total{rule="/api/auth/sign-up/"} 1');
  });
});

describe('per-IP rate limits behind a trusted proxy', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      config: {
        server: { trust_proxy: '127.0.0.1' },
        rate_limit: { enabled: true, rules },
        lockout: { max_failures: 1000 },
      },
    });
  });
  afterAll(() => t?.close());

  const viaProxy = (client: string, remoteAddress = '127.0.0.1') =>
    t.app.inject({
      method: 'POST',
      url: '/auth/login',
      remoteAddress,
      headers: { 'x-forwarded-for': client },
      payload: wrong,
    });

  it('counts the client named by the trusted proxy, IPv6 by /64', async () => {
    for (let i = 1; i <= 3; i++) expect((await viaProxy(`2001:db8:1:2::${i}`)).statusCode).toBe(401);
    expect((await viaProxy('2001:db8:1:2::ff')).statusCode).toBe(429);
    expect((await viaProxy('2001:db8:1:3::1')).statusCode).toBe(401);
    expect((await viaProxy('203.0.113.5')).statusCode).toBe(401);
  });

  it('ignores X-Forwarded-For from an address that is not the trusted proxy', async () => {
    for (let i = 0; i < 3; i++) expect((await viaProxy(`203.0.113.${100 + i}`, '192.0.2.77')).statusCode).toBe(401);
    expect((await viaProxy('203.0.113.200', '192.0.2.77')).statusCode).toBe(429);
  });
});

describe('the built-in table: the bearer check is not counted, the sessions list is', () => {
  let t: TestApp;
  beforeAll(async () => {
    // The built-in rules, with the /auth/ catch-all lowered so the test reaches it.
    const builtIn = DEFAULT_RATE_LIMIT_RULES.map((r) => (r.prefix === '/auth/' ? { ...r, max: 3 } : r));
    t = await createTestApp({ shared, config: { rate_limit: { enabled: true, rules: builtIn } } });
  });
  afterAll(() => t?.close());

  it('GET /auth/session passes any number of times; GET /auth/sessions gets 429 over the catch-all', async () => {
    const { token } = await registerUser(t.app);
    const get = (url: string) =>
      t.app.inject({ url, remoteAddress: '192.0.2.90', headers: { authorization: `Bearer ${token}` } });
    for (let i = 0; i < 10; i++) expect((await get('/auth/session')).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) expect((await get('/auth/sessions')).statusCode).toBe(200);
    const over = await get('/auth/sessions');
    expect(over.statusCode).toBe(429);
    expect(over.json().error.code).toBe('RATE_LIMITED');
    expect((await get('/auth/session')).statusCode).toBe(200);
  });
});

// Regression: nothing limited /admin/*, and each refusal of a non-administrator writes an audit row: any account (an
// anonymous one too) could grow the audit table without bound (400 calls, 400 rows, no 429).
describe('the built-in table limits the admin API', () => {
  let t: TestApp;
  beforeAll(async () => {
    const builtIn = DEFAULT_RATE_LIMIT_RULES.map((r) => (r.prefix === '/admin/' ? { ...r, max: 3 } : r));
    t = await createTestApp({ shared, config: { rate_limit: { enabled: true, rules: builtIn } } });
  });
  afterAll(() => t?.close());

  it('a non-administrator probing it gets 429 past the limit, and the audit rows stop there', async () => {
    const { token, userId } = await registerUser(t.app);
    const get = () =>
      t.app.inject({ url: '/admin/users', remoteAddress: '192.0.2.91', headers: { authorization: `Bearer ${token}` } });
    for (let i = 0; i < 3; i++) expect((await get()).json().error.code).toBe('ADMIN_REQUIRED');
    for (let i = 0; i < 5; i++) expect((await get()).json().error.code).toBe('RATE_LIMITED');
    const { rows } = await t.db.query(`SELECT 1 FROM auth_audit_log WHERE event = 'admin.action' AND user_id = $1`, [
      userId,
    ]);
    expect(rows).toHaveLength(3);
  });
});

// Regression: each rule had its own per-IP budget, so one address verified 40 passwords a minute instead of 20 by
// alternating /auth/login and /api/auth/sign-in/email (the same job through our route and Better Auth's).
describe('twin routes share one budget (bucket)', () => {
  const twins = [
    ['/auth/login', '/api/auth/sign-in/'],
    ['/auth/register', '/api/auth/sign-up/'],
    ['/auth/2fa/', '/api/auth/two-factor/'],
    ['/auth/password/', '/api/auth/reset-password'],
  ];
  const builtIn = (prefix: string) => DEFAULT_RATE_LIMIT_RULES.find((r) => r.prefix === prefix);

  let t: TestApp;
  beforeAll(async () => {
    // The built-in rules, with both sign-in limits lowered so the test reaches them.
    const lowered = DEFAULT_RATE_LIMIT_RULES.map((r) => (twins[0]?.includes(r.prefix) ? { ...r, max: 3 } : r));
    t = await createTestApp({
      shared,
      config: { rate_limit: { enabled: true, rules: lowered }, lockout: { max_failures: 1000 } },
    });
  });
  afterAll(() => t?.close());

  it('alternating /auth/login and /api/auth/sign-in/email gets 429 after the shared max', async () => {
    const signIn = (url: string, i: number) =>
      t.app.inject({
        method: 'POST',
        url,
        remoteAddress: '192.0.2.95',
        headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
        payload: JSON.stringify({ email: `twin${i}@example.com`, password: 'not-the-password' }),
      });
    const urls = ['/auth/login', '/api/auth/sign-in/email'];
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await signIn(urls[i % 2] as string, i)).statusCode);
    expect(codes).toEqual([401, 401, 401, 429, 429, 429]);
  });

  it('the built-in table gives each twin pair one bucket and one limit', () => {
    for (const [ours, theirs] of twins) {
      const [a, b] = [builtIn(ours as string), builtIn(theirs as string)];
      expect(a?.bucket, `${ours} and ${theirs}`).toBeTruthy();
      expect(b).toMatchObject({ bucket: a?.bucket, max: a?.max, window: a?.window });
    }
  });
});
