import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { type Database, openDatabase } from '../../src/db/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a session in constant use through gateway A was refused as idle (401) by gateway B, whose cached entry
// knew only B's own uses, when session_cache.ttl exceeds auth.session.idle_timeout (both within their ranges).
// SLOW (about 10 s: idleness takes real time). Two gateways on one PostgreSQL database, each with its own pool and
// LISTEN connection, as two processes.
describe.runIf(process.env.TEST_DATABASE_URL)('idle timeout across gateway processes', () => {
  const IDLE_TIMEOUT = 4; // seconds; uses are written once a second (a quarter of it)
  let a: TestApp;
  let bDb: Database;
  let b: Awaited<ReturnType<typeof buildApp>>;
  beforeAll(async () => {
    a = await createTestApp({
      config: { auth: { session: { idle_timeout: IDLE_TIMEOUT }, session_cache: { ttl: 120 } } },
    });
    bDb = await openDatabase({
      url: a.testDb.url as string,
      dataDir: a.testDb.dataDir,
      poolMax: 3,
      connectTimeoutSeconds: 5,
      statementTimeoutSeconds: 30,
    });
    b = await buildApp({ config: a.config, db: bDb, logger: false });
    await b.ready();
  });
  afterAll(async () => {
    await b?.close();
    await bDb?.close();
    await a?.close();
  });
  const session = (app: typeof b, token: string) =>
    app.inject({ method: 'GET', url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('a session used through A every 500 ms is accepted by B; once idle everywhere, both refuse it', async () => {
    const { token } = await registerUser(a.app);
    expect((await session(b, token)).statusCode).toBe(200); // cached in B, which sees no use after this
    for (let i = 0; i < 11; i++) {
      expect((await session(a.app, token)).statusCode).toBe(200);
      await sleep(500);
    }
    await a.app.sessions.flushUses(); // A's uses are in sessions.last_used_at
    // B's own last use is 5.5 s old, A's 0.5 s: B accepts it.
    expect((await session(b, token)).statusCode).toBe(200);

    await sleep(IDLE_TIMEOUT * 1000 + 1000);
    await a.app.sessions.flushUses();
    await b.sessions.flushUses();
    for (const app of [a.app, b, a.app, b]) {
      const res = await session(app, token);
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('INVALID_TOKEN');
    }
  }, 30_000);
});
