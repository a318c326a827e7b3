import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
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

const redisUrl = process.env.TEST_REDIS_URL;

// Two gateway processes (two apps on one database and one Redis) must enforce one lockout between them.
describe.skipIf(!redisUrl)('lockout shared through Redis by two gateway instances', () => {
  let t: TestApp;
  let second: Awaited<ReturnType<typeof buildApp>>;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      config: {
        redis: { url: redisUrl },
        lockout: { max_failures: 4, base_lockout: 120 },
        rate_limit: { enabled: false },
      },
    });
    second = await buildApp({ config: t.config, db: t.db, logger: false });
    await second.ready();
  });
  afterAll(async () => {
    await second?.close();
    await t?.close();
  });

  const login = (app: TestApp['app'], email: string, password: string) =>
    app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });

  it('failures on either instance count toward one lock that both enforce', async () => {
    const user = await registerUser(t.app, { email: `shared-${randomBytes(4).toString('hex')}@example.com` });
    expect((await login(t.app, user.email, 'wrong-a')).statusCode).toBe(401);
    expect((await login(second, user.email, 'wrong-b')).statusCode).toBe(401);
    expect((await login(t.app, user.email.toUpperCase(), 'wrong-c')).statusCode).toBe(401);
    expect((await login(second, ` ${user.email}`, 'wrong-d')).statusCode).toBe(401);
    for (const app of [t.app, second]) {
      const res = await login(app, user.email, user.password);
      expect(res.statusCode).toBe(429);
      expect(res.json().error.code).toBe('ACCOUNT_LOCKED');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(100);
    }
    const { rows } = await t.db.query(`SELECT 1 FROM auth_audit_log WHERE event = 'lockout' AND user_id = $1`, [
      user.userId,
    ]);
    expect(rows).toHaveLength(1);
  });

  it('20 parallel wrong passwords split over both instances: at most max_failures are verified', async () => {
    const user = await registerUser(t.app, { email: `burst-${randomBytes(4).toString('hex')}@example.com` });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => login(i % 2 ? second : t.app, user.email, `burst-${i}`)),
    );
    const codes = results.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 401).length).toBeLessThanOrEqual(4);
    expect(codes.filter((c) => c !== 401).every((c) => c === 429)).toBe(true);
  });

  it('a success on one instance resets the count for the other', async () => {
    const user = await registerUser(t.app, { email: `reset-${randomBytes(4).toString('hex')}@example.com` });
    for (let i = 0; i < 3; i++) expect((await login(t.app, user.email, `w${i}`)).statusCode).toBe(401);
    expect((await login(second, user.email, user.password)).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) expect((await login(t.app, user.email, `x${i}`)).statusCode).toBe(401);
    expect((await login(second, user.email, user.password)).statusCode).toBe(200);
  });
});

describe('Redis down: sign-ins keep working and stay throttled per process', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      config: {
        redis: { url: 'redis://127.0.0.1:1' }, // nothing listens there
        lockout: { max_failures: 2 },
        rate_limit: { enabled: true, rules: [{ prefix: '/auth/login', max: 100, window: 60 }] },
      },
    });
  });
  afterAll(() => t?.close());

  it('answers 200/401/429 (never 500) and counts the fallback', async () => {
    const user = await registerUser(t.app);
    const login = (password: string) =>
      t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password } });
    expect((await login(user.password)).statusCode).toBe(200);
    expect((await login('wrong-1')).statusCode).toBe(401);
    expect((await login('wrong-2')).statusCode).toBe(401);
    expect((await login(user.password)).statusCode).toBe(429);
    const metrics = await t.app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' });
    expect(metrics.body).toMatch(/^gateway_counter_store_fallbacks_total [1-9]/m);
  });
});
