import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../../src/db/index.js';
import { startTcpRelay } from '../helpers/tcp-relay.js';
import { createTestDatabase, type TestDatabase } from '../helpers/test-app.js';

// The LISTEN connection of src/db: its own URL when configured (PgBouncer in transaction mode cannot carry LISTEN),
// and reconnection with re-LISTEN after the server drops it. PostgreSQL only (PGlite listens in-process).
describe.runIf(process.env.TEST_DATABASE_URL)('database LISTEN connection', () => {
  let t: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    t = await createTestDatabase();
    const listenUrl = new URL(t.url as string);
    listenUrl.searchParams.set('application_name', 'gw_listener_test');
    db = await openDatabase({
      url: t.url as string,
      listenUrl: listenUrl.toString(),
      dataDir: t.dataDir,
      poolMax: 2,
      connectTimeoutSeconds: 5,
      statementTimeoutSeconds: 30,
    });
  });
  afterAll(async () => {
    await db?.close();
    await t?.drop();
  });

  /** This database with its LISTEN and lock connections through a relay that can go silent (heartbeat 200 ms). */
  const throughRelay = async () => {
    const relay = await startTcpRelay(t.url as string);
    const relayed = await openDatabase({
      url: t.url as string,
      listenUrl: relay.via(t.url as string),
      dataDir: t.dataDir,
      poolMax: 2,
      connectTimeoutSeconds: 1,
      statementTimeoutSeconds: 30,
      listenerHeartbeatMs: 200,
    });
    return { relay, relayed };
  };

  /** This database with its LISTEN and lock connections from a machine that can die (heartbeat 200 ms). */
  const fromDyingHost = async (applicationName: string) => {
    const relay = await startTcpRelay(t.url as string);
    const listenUrl = new URL(relay.via(t.url as string));
    listenUrl.searchParams.set('application_name', applicationName);
    const dying = await openDatabase({
      url: t.url as string,
      listenUrl: listenUrl.toString(),
      dataDir: t.dataDir,
      poolMax: 2,
      connectTimeoutSeconds: 1,
      statementTimeoutSeconds: 30,
      listenerHeartbeatMs: 200,
    });
    return { relay, dying };
  };

  /** Sessions of this database named `applicationName`, as the server sees them. */
  const sessionsNamed = async (applicationName: string) =>
    (
      await db.query('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1', [
        applicationName,
      ])
    ).rows.length;

  const next = (channel: string) =>
    new Promise<string>((resolve) => {
      void db.listen(channel, resolve);
    });

  it('listens on database.listen_url, queries on database.url', async () => {
    const got = next('gw_test_channel');
    await new Promise((r) => setTimeout(r, 50));
    await db.notify('gw_test_channel', 'hello');
    expect(await got).toBe('hello');
    const { rows } = await db.query<{ application_name: string }>(
      `SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`,
    );
    expect(rows.map((r) => r.application_name)).toContain('gw_listener_test');
  });

  it('reports down when the connection is killed, reconnects, and LISTENs again', async () => {
    const states: boolean[] = [];
    const back = new Promise<void>((resolve) => {
      db.onListenerChange((up) => {
        states.push(up);
        if (up) resolve();
      });
    });
    await db.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gw_listener_test' AND datname = current_database()`,
    );
    await back;
    expect(states).toEqual([false, true]);
    expect(db.listening).toBe(true);
    // A channel LISTENed before the loss (re-LISTENed on reconnect) and one added after.
    const old = next('gw_test_channel');
    const added = next('gw_test_channel_2');
    await new Promise((r) => setTimeout(r, 50));
    await db.notify('gw_test_channel', 'again');
    await db.notify('gw_test_channel_2', 'new channel');
    expect(await old).toBe('again');
    expect(await added).toBe('new channel');
  });

  it('notices a LISTEN connection that stops answering without closing, and comes back after', async () => {
    const { relay, relayed } = await throughRelay();
    try {
      const got: string[] = [];
      await relayed.listen('gw_test_silent', (payload) => got.push(payload));
      expect(relayed.listening).toBe(true);
      const states: boolean[] = [];
      relayed.onListenerChange((up) => states.push(up));

      relay.silent = true;
      await expect.poll(() => states, { timeout: 5000 }).toEqual([false]);
      expect(relayed.listening).toBe(false);

      relay.silent = false;
      await expect.poll(() => states, { timeout: 10_000 }).toEqual([false, true]);
      await relayed.notify('gw_test_silent', 'after');
      await expect.poll(() => got, { timeout: 5000 }).toEqual(['after']);
    } finally {
      await relayed.close();
      await relay.close();
    }
  });

  // Regression: the lock's connection had no heartbeat. Cut silently, it never errored, so its holder went on polling
  // Telegram after the server had ended the session and another process had taken the lock: two pollers.
  it('an advisory lock whose connection goes silent is reported lost (the server frees it for another process)', async () => {
    const { relay, relayed } = await throughRelay();
    const KEY = 727219999;
    let lost = 0;
    try {
      const held = await relayed.tryAdvisoryLock(KEY, () => lost++);
      expect(held).not.toBeNull();
      expect(await db.tryAdvisoryLock(KEY)).toBeNull();

      // No FIN, no RST: nothing but the heartbeat can tell. Once it has, the holder stops (and closes its socket, which
      // ends the session and frees the lock; the server would end it on its own sooner or later).
      relay.silent = true;
      await expect.poll(() => lost, { timeout: 5000 }).toBe(1);
      const taken: { lock: Awaited<ReturnType<Database['tryAdvisoryLock']>> } = { lock: null };
      const takeLock = async () => {
        taken.lock ??= await db.tryAdvisoryLock(KEY);
        return taken.lock !== null;
      };
      await expect.poll(takeLock, { timeout: 5000 }).toBe(true);
      await taken.lock?.release();
      await held?.release();
      expect(lost).toBe(1);
    } finally {
      await relayed.close();
      await relay.close();
    }
  });

  // Regression: a Telegram poller whose machine died (no FIN, no RST) kept its lock for two hours, the server's TCP
  // keepalive time, and no standby took over. The server now ends such a session after three heartbeats of silence.
  it('an advisory lock whose holder’s machine dies is freed by the server within seconds', async () => {
    const { relay, dying } = await fromDyingHost('gw_dying_lock_holder');
    const KEY = 727219998;
    let lost = 0;
    const taken: { lock: Awaited<ReturnType<Database['tryAdvisoryLock']>> } = { lock: null };
    try {
      expect(await dying.tryAdvisoryLock(KEY, () => lost++)).not.toBeNull();
      expect(await db.tryAdvisoryLock(KEY)).toBeNull();

      relay.dead = true; // nothing more reaches the server: not the heartbeat, not the close that follows it
      await expect.poll(() => lost, { timeout: 5000 }).toBe(1);
      const takeLock = async () => {
        taken.lock ??= await db.tryAdvisoryLock(KEY);
        return taken.lock !== null;
      };
      await expect.poll(takeLock, { timeout: 5000, interval: 200 }).toBe(true);
    } finally {
      await taken.lock?.release();
      await dying.close();
      await relay.close();
    }
  });

  it('the LISTEN session of a process whose machine dies is ended by the server within seconds', async () => {
    const { relay, dying } = await fromDyingHost('gw_dying_listener');
    try {
      await dying.listen('gw_test_dying', () => {});
      expect(await sessionsNamed('gw_dying_listener')).toBe(1);
      relay.dead = true;
      await expect.poll(() => sessionsNamed('gw_dying_listener'), { timeout: 5000, interval: 200 }).toBe(0);
    } finally {
      await dying.close();
      await relay.close();
    }
  });

  it('a live lock holder and listener outlast that bound: their heartbeat keeps them busy', async () => {
    const { relay, dying: live } = await fromDyingHost('gw_live_heartbeat');
    const KEY = 727219997;
    let lost = 0;
    const states: boolean[] = [];
    try {
      await live.listen('gw_test_live', () => {});
      live.onListenerChange((up) => states.push(up));
      const held = await live.tryAdvisoryLock(KEY, () => lost++);
      expect(held).not.toBeNull();
      await new Promise((r) => setTimeout(r, 2000)); // ten heartbeats; idle_session_timeout is three
      expect(lost).toBe(0);
      expect(states).toEqual([]);
      expect(await db.tryAdvisoryLock(KEY)).toBeNull();
      expect(await sessionsNamed('gw_live_heartbeat')).toBe(2);
      await held?.release();
    } finally {
      await live.close();
      await relay.close();
    }
  });
});
