import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../src/app.js';
import type { SessionEnded } from '../../src/authenticator/index.js';
import { type Database, openDatabase } from '../../src/db/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// The validated-session cache in a running gateway: no database read per bearer check, yet every way a session ends
// (logout here, logout on another instance, a DELETE by hand) is refused at once; and a lost LISTEN connection
// flushes it. Two app instances share one database (PostgreSQL: two connection pools, as two processes would).
describe('session cache: revocation reaches every instance', () => {
  let a: TestApp;
  let bDb: Database;
  let b: Awaited<ReturnType<typeof buildApp>>;
  const postgres = Boolean(process.env.TEST_DATABASE_URL);

  beforeAll(async () => {
    a = await createTestApp();
    bDb = a.testDb.url
      ? await openDatabase({
          url: a.testDb.url,
          dataDir: a.testDb.dataDir,
          poolMax: 3,
          connectTimeoutSeconds: 5,
          statementTimeoutSeconds: 30,
        })
      : a.db; // PGlite cannot be opened twice: the second instance shares the first one's database object
    b = await buildApp({ config: a.config, db: bDb, logger: false });
    await b.ready();
  });
  afterAll(async () => {
    await b?.close();
    if (bDb && bDb !== a.db) await bDb.close();
    await a?.close();
  });

  const session = (app: typeof b, token: string) =>
    app.inject({ method: 'GET', url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  const logout = (app: typeof b, token: string) =>
    app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${token}` } });
  const ended = (app: typeof b, sessionId: string) =>
    new Promise<SessionEnded>((resolve) => {
      const off = app.sessionEvents.onSessionEnded((e) => {
        if (e.sessionId !== sessionId) return;
        off();
        resolve(e);
      });
    });
  const sessionIdOf = async (app: typeof b, token: string) =>
    ((await session(app, token)).json() as { session: { id: string } }).session.id;

  it('a repeated bearer check reads the database once', async () => {
    const { token } = await registerUser(a.app);
    expect((await session(a.app, token)).statusCode).toBe(200);
    const query = vi.spyOn(a.db, 'query');
    try {
      for (let i = 0; i < 20; i++) expect((await session(a.app, token)).statusCode).toBe(200);
      expect(query).not.toHaveBeenCalled();
    } finally {
      query.mockRestore();
    }
  });

  it('logout on this instance: the very next check is refused', async () => {
    const { token } = await registerUser(a.app);
    expect((await session(a.app, token)).statusCode).toBe(200);
    expect((await logout(a.app, token)).statusCode).toBe(200);
    expect((await session(a.app, token)).statusCode).toBe(401);
  });

  it('a logout waits for the session-end events before answering; a sign-in (which ends none) does not', async () => {
    const { token, email, password } = await registerUser(a.app);
    expect((await session(a.app, token)).statusCode).toBe(200); // the cache holds an entry: syncs are due
    const sync = vi.spyOn(a.app.sessionEvents, 'sync');
    try {
      const login = await a.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });
      expect(login.statusCode).toBe(200);
      expect(sync).not.toHaveBeenCalled();
      expect((await logout(a.app, token)).statusCode).toBe(200);
      expect(sync).toHaveBeenCalledTimes(1);
    } finally {
      sync.mockRestore();
    }
  });

  it('logout on instance B empties instance A cache and A refuses the token', async () => {
    const { token } = await registerUser(a.app);
    expect((await session(a.app, token)).statusCode).toBe(200);
    expect((await session(b, token)).statusCode).toBe(200);
    const sid = await sessionIdOf(a.app, token);
    const onA = ended(a.app, sid);
    expect((await logout(b, token)).statusCode).toBe(200);
    await onA;
    expect((await session(a.app, token)).statusCode).toBe(401);
    expect((await session(b, token)).statusCode).toBe(401);
  });

  it('a session deleted by hand (SQL) is refused once its event arrives', async () => {
    const { token } = await registerUser(a.app);
    const sid = await sessionIdOf(a.app, token);
    const onA = ended(a.app, sid);
    await bDb.query('DELETE FROM sessions WHERE id = $1', [sid]);
    await onA;
    expect((await session(a.app, token)).statusCode).toBe(401);
  });

  it.runIf(postgres)('a lost LISTEN connection flushes and bypasses the cache until LISTEN is back', async () => {
    const { token } = await registerUser(a.app);
    expect((await session(a.app, token)).statusCode).toBe(200);
    expect(a.app.sessionCache.size).toBeGreaterThan(0);
    const down = new Promise<void>((resolve) => {
      const off = a.app.sessionEvents.onListening((up) => {
        if (!up) {
          off();
          resolve();
        }
      });
    });
    const up = new Promise<void>((resolve) => {
      const off = a.app.sessionEvents.onListening((isUp) => {
        if (isUp) {
          off();
          resolve();
        }
      });
    });
    // Kill the LISTEN backends of this database (both instances), as a PostgreSQL restart would.
    await bDb.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'auth-gateway listener'`,
    );
    await down;
    expect(a.app.sessionCache.enabled).toBe(false);
    expect(a.app.sessionCache.size).toBe(0);
    await up;
    expect(a.app.sessionCache.enabled).toBe(true);
    // Events flow again after the reconnect: a logout on B still reaches A.
    expect((await session(a.app, token)).statusCode).toBe(200);
    const sid = await sessionIdOf(a.app, token);
    const onA = ended(a.app, sid);
    expect((await logout(b, token)).statusCode).toBe(200);
    await onA;
    expect((await session(a.app, token)).statusCode).toBe(401);
  });
});

describe('session cache: expiry', () => {
  let t: TestApp;
  // update_age = expires_in: sliding expiry never extends, so a session can be made to end while cached.
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { session: { expires_in: 3600, update_age: 3600 } } } });
  });
  afterAll(() => t?.close());

  it('a cached session is not served past its expires_at', async () => {
    const { token } = await registerUser(t.app);
    const check = () =>
      t.app.inject({ method: 'GET', url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
    const sid = ((await check()).json() as { session: { id: string } }).session.id;
    await t.db.query(`UPDATE sessions SET expires_at = now() + interval '1 second' WHERE id = $1`, [sid]);
    t.app.sessionCache.forget(sid); // an UPDATE sends no event: start from a read that sees the short expiry
    expect((await check()).statusCode).toBe(200);
    expect(t.app.sessionCache.size).toBe(1);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await check()).statusCode).toBe(401);
  });
});
