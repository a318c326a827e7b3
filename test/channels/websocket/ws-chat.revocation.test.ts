import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../../src/app.js';
import { openDatabase } from '../../../src/db/index.js';
import { startTcpRelay } from '../../helpers/tcp-relay.js';
import { createTestApp, createTestDatabase, registerUser, type TestApp, testConfig } from '../../helpers/test-app.js';
import { connect, listen, type WsClient } from '../../helpers/ws-client.js';

const open = async (url: string, token: string): Promise<WsClient> => {
  const c = await connect(url, { authorization: `Bearer ${token}` });
  expect((await c.next()).type).toBe('auth_ok');
  return c;
};
/** What `p` resolves with, or 'still open' after `ms`. */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise((r) => setTimeout(() => r('still open'), ms))]);

describe('/ws/chat: live revocation', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    // update_age = expires_in: authenticating never extends a session, so a shortened expiry stays short.
    t = await createTestApp({
      config: {
        websocket: { heartbeat_interval: 5 },
        auth: { session: { expires_in: 3600, update_age: 3600 } },
        licenses: { types: { free: { resource_limits: { max_ws_connections: 10 } } } },
      },
    });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  it('closes every socket of a session with 4409 on logout through REST; other sessions stay open', async () => {
    const { token, email, password } = await registerUser(t.app);
    const login = await t.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });
    const other = (login.json() as { token: string }).token;
    const a = await open(url, token);
    const b = await open(url, token);
    const c = await open(url, other);
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.statusCode).toBe(200);
    expect(await a.next()).toEqual({ type: 'error', code: 'SESSION_REVOKED' });
    expect(await a.closed).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
    expect((await b.closed).code).toBe(4409);
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  it('closes the sockets of a socket authenticated by frame as well', async () => {
    const { token } = await registerUser(t.app);
    const c = await connect(url);
    c.send({ type: 'auth', token });
    expect((await c.next()).type).toBe('auth_ok');
    await t.app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${token}` } });
    expect((await c.closed).code).toBe(4409);
  });

  it('closes the sockets when the user is deleted', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await open(url, token);
    await t.db.query('DELETE FROM users WHERE id = $1', [userId]);
    expect((await c.closed).code).toBe(4409);
  });

  // Regression: a user disabled by a plain update of their row (REST refused the token at once) went on chatting on
  // their open sockets until the session expired: the session rows remain, so no end event closed them.
  it('closes the sockets with 4409 when the user is disabled by an update of their row', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await open(url, token);
    const bystander = await open(url, (await registerUser(t.app)).token);
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
    expect(await c.next()).toEqual({ type: 'error', code: 'SESSION_REVOKED' });
    expect(await c.closed).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
    bystander.send({ type: 'ping' });
    expect(await bystander.next()).toEqual({ type: 'pong' });
    bystander.ws.close();
  });

  it('closes a socket with 4409 SESSION_EXPIRED when its session expires', async () => {
    const { token, userId } = await registerUser(t.app);
    await t.db.query(`UPDATE sessions SET expires_at = now() + interval '700 milliseconds' WHERE user_id = $1`, [
      userId,
    ]);
    const c = await open(url, token);
    expect(await c.next()).toEqual({ type: 'error', code: 'SESSION_EXPIRED' });
    expect(await c.closed).toEqual({ code: 4409, reason: 'SESSION_EXPIRED' });
  });

  it('keeps a socket open past its old expiry when the session was extended meanwhile', async () => {
    const { token, userId } = await registerUser(t.app);
    await t.db.query(`UPDATE sessions SET expires_at = now() + interval '500 milliseconds' WHERE user_id = $1`, [
      userId,
    ]);
    const c = await open(url, token);
    await t.db.query(`UPDATE sessions SET expires_at = now() + interval '1 hour' WHERE user_id = $1`, [userId]);
    await new Promise((r) => setTimeout(r, 800));
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  // Regression: a change of a user's IP allow list refused REST from an excluded address at once, but left that user's
  // open sockets from there open until they closed by themselves.
  it("closes a user's sockets from an address their new IP allow list excludes, 4403 IP_NOT_ALLOWED", async () => {
    const { token, email, password } = await registerUser(t.app);
    const login = await t.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });
    const other = (login.json() as { token: string }).token;
    const a = await open(url, token);
    const b = await open(url, other);
    const bystander = await open(url, (await registerUser(t.app)).token);

    // Set through the API from an address both lists include; the sockets' address (127.0.0.1) is in the first only.
    const setList = (cidrs: string[]) =>
      t.app.inject({
        method: 'PUT',
        url: '/auth/ip-allowlist',
        remoteAddress: '10.1.2.3',
        headers: { authorization: `Bearer ${token}` },
        payload: { cidrs },
      });
    expect((await setList(['10.0.0.0/8', '127.0.0.0/8'])).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    a.send({ type: 'ping' });
    expect(await a.next()).toEqual({ type: 'pong' });

    expect((await setList(['10.0.0.0/8'])).statusCode).toBe(200);
    expect(await a.next()).toEqual({ type: 'error', code: 'IP_NOT_ALLOWED' });
    expect(await a.closed).toEqual({ code: 4403, reason: 'IP_NOT_ALLOWED' });
    expect(await b.closed).toEqual({ code: 4403, reason: 'IP_NOT_ALLOWED' });
    bystander.send({ type: 'ping' });
    expect(await bystander.next()).toEqual({ type: 'pong' });
    bystander.ws.close();
  });
});

/** A chat backend stand-in that records each request; "slow" streams for 10 s unless the gateway aborts it. */
function startUpstream(): Promise<{ url: string; seen: string[]; aborted: string[]; close(): void }> {
  const seen: string[] = [];
  const aborted: string[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => {
      raw += c.toString();
    });
    req.on('end', () => {
      const { id, text } = JSON.parse(raw) as { id: string; text: string };
      seen.push(id);
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      if (text !== 'slow') {
        res.end(`You said: ${text}`);
        return;
      }
      res.write('thinking');
      const done = setTimeout(() => res.end(' done'), 10_000);
      res.on('close', () => {
        clearTimeout(done);
        if (!res.writableFinished) aborted.push(id);
      });
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/chat`,
        seen,
        aborted,
        close: () => server.close(),
      }),
    ),
  );
}

// A socket we closed is CLOSING until its peer answers our close frame (ws waits 30 s for that), and ws still hands
// us its frames meanwhile. A peer that never answers must get nothing more out of it.
describe('/ws/chat: a socket the gateway closed', () => {
  let t: TestApp;
  let url: string;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  beforeAll(async () => {
    upstream = await startUpstream();
    t = await createTestApp({ config: { chat: { upstream_url: upstream.url }, websocket: { heartbeat_interval: 5 } } });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(async () => {
    await t?.close();
    upstream?.close();
  });

  /** The client ignores our close frame: it neither answers it nor stops sending. */
  const deaf = (c: WsClient) => {
    c.ws.close = () => {};
    return c;
  };

  // Regression: after SESSION_REVOKED, every message frame until ws's 30 s close timeout still spent the allowance and
  // reached the chat upstream with the revoked session's identity.
  it('ignores the frames of a revoked socket, aborts its reply under way and drops it within about 2 s', async () => {
    const { token } = await registerUser(t.app);
    const c = deaf(await open(url, token));
    c.send({ type: 'message', id: 'slow-1', text: 'slow' });
    expect(await c.next()).toEqual({ type: 'reply', id: 'slow-1', text: 'thinking' });
    const before = upstream.seen.length;
    await t.app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${token}` } });
    expect(await c.next()).toEqual({ type: 'error', code: 'SESSION_REVOKED' });
    for (let i = 0; i < 5; i++) c.send({ type: 'message', id: `after-${i}`, text: 'hi' });
    await vi.waitFor(() => expect(upstream.aborted).toContain('slow-1'), { timeout: 1000 });
    expect(await within(c.closed, 4000)).toMatchObject({ code: 4409 });
    expect(upstream.seen.length).toBe(before);
  });

  it('does not authenticate further auth frames on a socket it refused', async () => {
    const { token } = await registerUser(t.app);
    const c = deaf(await connect(url));
    c.send({ type: 'auth', token: 'garbage' });
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'INVALID_TOKEN' });
    const authenticate = vi.spyOn(t.app.authenticator, 'authenticateToken');
    try {
      for (let i = 0; i < 5; i++) c.send({ type: 'auth', token });
      expect(await within(c.closed, 4000)).toMatchObject({ code: 4401 });
      expect(authenticate).not.toHaveBeenCalled();
    } finally {
      authenticate.mockRestore();
    }
  });
});

// Two gateway processes on one PostgreSQL database: the session ends through B, A's socket closes (LISTEN/NOTIFY).
// PGlite is one process by construction, so there is no second gateway to end it from.
describe.skipIf(!process.env.TEST_DATABASE_URL)('/ws/chat: revocation from another gateway instance', () => {
  it('closes a socket on gateway A when the session is logged out on gateway B', async () => {
    const testDb = await createTestDatabase();
    const secondDb = await openDatabase({
      url: testDb.url as string,
      dataDir: testDb.dataDir,
      poolMax: 2,
      connectTimeoutSeconds: 5,
      statementTimeoutSeconds: 30,
    });
    const config = testConfig(testDb.dataDir, { websocket: { heartbeat_interval: 5 } });
    const a = await buildApp({ config, db: testDb.db, logger: false });
    const b = await buildApp({ config, db: secondDb, logger: false });
    try {
      await a.ready();
      await b.ready();
      const { token } = await registerUser(b);
      const c = await open(`${await listen(a)}/ws/chat`, token);
      const res = await b.inject({
        method: 'POST',
        url: '/auth/logout',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(200);
      expect(await c.closed).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
    } finally {
      await a.close();
      await b.close();
      await secondDb.close();
      await testDb.drop();
    }
  });
});

// Session ends and license changes that no event announced: made while this process's LISTEN connection was cut (by
// another gateway, psql or a cron job), or while a socket was still being authenticated.
describe.skipIf(!process.env.TEST_DATABASE_URL)('/ws/chat: revocation the events could not announce', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('checks every socket once the session events are back: ended sessions close 4409, lost chat or address 4403', async () => {
    const testDb = await createTestDatabase();
    cleanups.push(() => testDb.drop());
    const relay = await startTcpRelay(testDb.url as string);
    cleanups.push(() => relay.close());
    const db = await openDatabase({
      url: testDb.url as string,
      listenUrl: relay.via(testDb.url as string),
      dataDir: testDb.dataDir,
      poolMax: 4,
      connectTimeoutSeconds: 1,
      statementTimeoutSeconds: 30,
      listenerHeartbeatMs: 200,
    });
    cleanups.push(() => db.close());
    const app = await buildApp({ config: testConfig(testDb.dataDir, { websocket: { heartbeat_interval: 5 } }), db });
    cleanups.push(() => app.close());
    await app.ready();
    const url = `${await listen(app)}/ws/chat`;
    const ended = await registerUser(app);
    const unlicensed = await registerUser(app);
    const untouched = await registerUser(app);
    const narrowed = await registerUser(app);
    const a = await open(url, ended.token);
    const b = await open(url, unlicensed.token);
    const c = await open(url, untouched.token);
    const d = await open(url, narrowed.token);

    relay.silent = true;
    await expect.poll(() => db.listening, { timeout: 5000 }).toBe(false);
    await db.query('DELETE FROM sessions WHERE user_id = $1', [ended.userId]);
    await db.query(
      `INSERT INTO user_licenses (user_id, license_type, features) VALUES ($1, 'free', '{"chat": false}')`,
      [unlicensed.userId],
    );
    await db.query(`UPDATE users SET ip_allowlist = '{10.0.0.0/8}' WHERE id = $1`, [narrowed.userId]);
    // Nothing announced them: the sockets are still open.
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    expect(a.ws.readyState).toBe(a.ws.OPEN);

    relay.silent = false;
    expect(await a.closed).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
    expect((await b.closed).code).toBe(4403);
    expect(await d.closed).toEqual({ code: 4403, reason: 'IP_NOT_ALLOWED' });
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  /**
   * An app on its own database and a user whose session is due for renewal, its row locked: an upgrade with their token
   * reads the session, then stalls in the renewal (an UPDATE waiting for the lock) until `locker` commits.
   */
  async function stalledAuthentication() {
    const testDb = await createTestDatabase();
    cleanups.push(() => testDb.drop());
    const app = await buildApp({
      config: testConfig(testDb.dataDir, { websocket: { heartbeat_interval: 5 } }),
      db: testDb.db,
    });
    cleanups.push(() => app.close());
    await app.ready();
    const url = `${await listen(app)}/ws/chat`;
    const { token, userId } = await registerUser(app);
    await testDb.db.query(`UPDATE sessions SET expires_at = now() + interval '1 day' WHERE user_id = $1`, [userId]);
    const locker = new pg.Client({ connectionString: testDb.url as string });
    await locker.connect();
    cleanups.push(() => locker.end());
    await locker.query('BEGIN');
    await locker.query('SELECT id FROM sessions WHERE user_id = $1 FOR UPDATE', [userId]);

    const connecting = connect(url, { authorization: `Bearer ${token}` });
    await expect
      .poll(
        async () =>
          // Not on the locker's connection: inside its transaction pg_stat_activity is a snapshot taken once.
          (
            await testDb.db.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE sessions SET expires_at%'`,
            )
          ).rows[0]?.n,
        { timeout: 5000 },
      )
      .toBe(1);
    return { app, db: testDb.db, userId, locker, connecting };
  }

  it('refuses a socket whose session ended while its authentication was under way', async () => {
    const { userId, locker, connecting } = await stalledAuthentication();
    // The session ends (its end event goes out) while the renewal still waits; then the renewal finds no row.
    await locker.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
    await locker.query('COMMIT');

    const c = await connecting;
    expect(await within(c.closed, 3000)).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
  });

  // Regression: an allow list changed while a socket was being authenticated never applied to it: the change found no
  // socket of the user to check, and the authentication had read the old list.
  it('closes a socket with 4403 when its allow list changed while its authentication was under way', async () => {
    const { app, db, userId, locker, connecting } = await stalledAuthentication();
    // The socket's address (127.0.0.1) is excluded now; the authentication read the old list.
    await db.query(`UPDATE users SET ip_allowlist = ARRAY['10.0.0.0/8'] WHERE id = $1`, [userId]);
    await app.sessionEvents.sync(); // the change has been announced
    await locker.query('COMMIT');

    const c = await connecting;
    expect((await c.next()).type).toBe('auth_ok');
    expect(await c.next()).toEqual({ type: 'error', code: 'IP_NOT_ALLOWED' });
    expect(await within(c.closed, 3000)).toEqual({ code: 4403, reason: 'IP_NOT_ALLOWED' });
  });

  it('closes a socket with 4409 when its user was disabled while its authentication was under way', async () => {
    const { app, db, userId, locker, connecting } = await stalledAuthentication();
    await db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
    await app.sessionEvents.sync();
    await locker.query('COMMIT');

    const c = await connecting;
    expect((await c.next()).type).toBe('auth_ok');
    expect(await c.next()).toEqual({ type: 'error', code: 'SESSION_REVOKED' });
    expect(await within(c.closed, 3000)).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
  });

  // Regression: a license change was remembered for authentications under way for 10 s only, though one may take
  // longer (a session read, then a renewal, each up to statement_timeout).
  it('refuses a socket whose license lost chat more than 10 s into its authentication', async () => {
    const { app, db, userId, locker, connecting } = await stalledAuthentication();
    const announced = new Promise<void>((resolve) => {
      const off = app.licenseEvents.onLicenseChanged(() => {
        off();
        resolve();
      });
    });
    await db.query(
      `INSERT INTO user_licenses (user_id, license_type, features) VALUES ($1, 'free', '{"chat": false}')`,
      [userId],
    );
    await announced;
    // The clock jumps 11 s instead of the test waiting for them.
    const now = Date.now;
    const later = vi.spyOn(Date, 'now').mockImplementation(() => now() + 11_000);
    try {
      await locker.query('COMMIT');
      const c = await connecting;
      expect(await c.next()).toEqual({ type: 'auth_error', code: 'FORBIDDEN' });
      expect(await within(c.closed, 3000)).toEqual({ code: 4403, reason: 'FORBIDDEN' });
    } finally {
      later.mockRestore();
    }
  });
});
