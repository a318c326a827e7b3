import * as OTPAuth from 'otpauth';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

/**
 * Regression: a Better Auth call whose query lost its connection (57P01, what every backend gets when PostgreSQL is
 * stopped or restarted) was answered with Better Auth's own refusal: its sign-up catches any error of the user insert
 * as 422 FAILED_TO_CREATE_USER, its 2FA step a challenge it could not read as 401. A client does not retry a 4xx, so
 * the registration or sign-in was lost; it is answered 503 DATABASE_UNAVAILABLE with Retry-After, as every lost query.
 */
describe.runIf(process.env.TEST_DATABASE_URL)('a Better Auth call whose query loses its connection', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ kind: 'postgres' });
    // Test instrumentation on this test's own database: a user insert or a verification row's delete waits while
    // advisory lock 4242 is held (and runs at once while it is not).
    await t.db.exec(`
      CREATE FUNCTION cut_gate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242);
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END; END $$;
      CREATE TRIGGER cut_gate BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION cut_gate();
      CREATE TRIGGER cut_gate BEFORE DELETE ON verification_tokens FOR EACH ROW EXECUTE FUNCTION cut_gate();`);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Runs `send` while the gated statements wait, and terminates the backend whose statement matches `statement`. */
  async function cutAt<R>(statement: string, send: () => Promise<R>): Promise<R> {
    const locker = new pg.Client({ connectionString: t.testDb.url as string });
    await locker.connect();
    try {
      await locker.query('SELECT pg_advisory_lock(4242)');
      const pending = send();
      let pid: number | undefined;
      for (let i = 0; i < 200 && pid === undefined; i++) {
        const { rows } = await locker.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
             AND query ILIKE $1`,
          [`%${statement}%`],
        );
        pid = rows[0]?.pid;
        if (pid === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      expect(pid, `the call reached ${statement}`).toBeDefined();
      await locker.query('SELECT pg_terminate_backend($1)', [pid]);
      await locker.query('SELECT pg_advisory_unlock(4242)');
      return await pending;
    } finally {
      await locker.end().catch(() => {});
    }
  }

  const expectUnavailable = (res: { statusCode: number; body: string; headers: Record<string, unknown> }) => {
    expect(res.statusCode, res.body).toBe(503);
    expect(JSON.parse(res.body).error.code).toBe('DATABASE_UNAVAILABLE');
    expect(res.headers['retry-after']).toBeDefined();
  };
  const origin = () => t.config.server.base_url;

  it('POST /api/auth/sign-up/email: 503 DATABASE_UNAVAILABLE, and the retry registers the account', async () => {
    const signUp = (email: string) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-up/email',
        headers: { origin: origin(), 'content-type': 'application/json' },
        payload: { email, password: 'SecurePassword123!', name: 'Cut' },
      });
    const email = `cutba${Date.now()}@example.com`;
    expectUnavailable(await cutAt('insert into "users"', () => signUp(email)));
    expect((await signUp(email)).statusCode).toBe(200);
  });

  it('POST /auth/register: 503 DATABASE_UNAVAILABLE', async () => {
    const email = `cut${Date.now()}@example.com`;
    const res = await cutAt('insert into "users"', () =>
      t.app.inject({ method: 'POST', url: '/auth/register', payload: { email, password: 'SecurePassword123!' } }),
    );
    expectUnavailable(res);
  });

  it("POST /api/auth/two-factor/verify-totp: 503 when the challenge's attempt count cannot be read", async () => {
    const user = await registerUser(t.app);
    const post = (url: string, payload: object) =>
      t.app.inject({ method: 'POST', url, payload, headers: { authorization: `Bearer ${user.token}` } });
    const enabled = await post('/auth/2fa/enable', { password: user.password });
    const totp = OTPAuth.URI.parse(enabled.json().otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() })).statusCode).toBe(200);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'content-type': 'application/json', origin: origin() },
      payload: JSON.stringify({ email: user.email, password: user.password }),
    });
    const cookie = ([] as string[])
      .concat(signIn.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .find((c) => c.startsWith('better-auth.two_factor=')) as string;
    expect(cookie).toBeDefined();
    // Better Auth reads (deletes) the challenge's attempt count and takes a failure for no challenge at all (401).
    const res = await cutAt('delete from "verification_tokens"', () =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/two-factor/verify-totp',
        headers: { cookie, 'content-type': 'application/json', origin: origin() },
        payload: JSON.stringify({ code: totp.generate({ timestamp: Date.now() + 30_000 }) }),
      }),
    );
    expectUnavailable(res);
  });
});
