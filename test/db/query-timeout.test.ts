import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, isUnavailableError, openDatabase, QUERY_TIMEOUT_MARGIN_MS } from '../../src/db/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/test-app.js';

/**
 * A TCP relay in front of the real PostgreSQL that can go silent, as a network cut or a half-open connection after a
 * failover does: bytes are swallowed in both directions, nothing is closed.
 */
async function silentableRelay(target: URL) {
  let silent = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => silent || upstream.write(d));
    upstream.on('data', (d) => silent || client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.toString(),
    setSilent(on: boolean) {
      silent = on;
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe.skipIf(!process.env.TEST_DATABASE_URL)('a PostgreSQL connection that stops answering', () => {
  let t: TestDatabase;
  let relay: Awaited<ReturnType<typeof silentableRelay>>;
  let db: Database;
  beforeAll(async () => {
    t = await createTestDatabase();
    relay = await silentableRelay(new URL(t.url as string));
    db = await openDatabase({
      url: relay.url,
      dataDir: '',
      poolMax: 1, // one connection: the query after the cut must get a new one
      connectTimeoutSeconds: 2,
      statementTimeoutSeconds: 1,
    });
  });
  afterAll(async () => {
    await db?.close().catch(() => {});
    await relay?.close();
    await t?.drop();
  });

  it('a query fails as "unavailable" soon after statement_timeout, and the pool recovers with a new connection', async () => {
    expect((await db.query<{ n: number }>('SELECT 1 AS n')).rows[0]?.n).toBe(1);
    relay.setSilent(true);
    const started = Date.now();
    const err = await db.query('SELECT 1').catch((e: unknown) => e);
    const waited = Date.now() - started;
    expect(isUnavailableError(err)).toBe(true);
    expect(waited).toBeGreaterThanOrEqual(1000 + QUERY_TIMEOUT_MARGIN_MS - 100);
    relay.setSilent(false);
    expect((await db.query<{ n: number }>('SELECT 2 AS n')).rows[0]?.n).toBe(2);
  });

  it('a transaction cut off mid-way fails, and its connection is not handed to the next caller', async () => {
    const cut = db.transaction(async (tx) => {
      await tx.query('SELECT 1');
      relay.setSilent(true);
      await tx.query('SELECT 2');
    });
    const err = await cut.catch((e: unknown) => e);
    expect(isUnavailableError(err)).toBe(true);
    relay.setSilent(false);
    // With one pool connection, a stuck one handed back would hang this (its ROLLBACK still queued behind SELECT 2).
    expect((await db.query<{ n: number }>('SELECT 3 AS n')).rows[0]?.n).toBe(3);
  });

  it('a statement cancelled by statement_timeout counts as unavailable (503), not an internal error', async () => {
    const err = await db.query('SELECT pg_sleep(3)').catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('57014');
    expect(isUnavailableError(err)).toBe(true);
  });

  // Regression: the migration ran in a pool transaction, whose every query the client abandoned at statement_timeout
  // plus QUERY_TIMEOUT_MARGIN_MS: a schema change (or the wait for another process's) that took longer never applied.
  it('an unbounded transaction (a migration) may outlast statement_timeout and the client-side timeout', async () => {
    const started = Date.now();
    const slept = await db.transaction(
      async (tx) => {
        await tx.query('SET LOCAL statement_timeout = 0');
        return (await tx.query<{ slept: boolean }>('SELECT true AS slept FROM pg_sleep(3.5)')).rows[0]?.slept;
      },
      { unbounded: true },
    );
    expect(slept).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000 + QUERY_TIMEOUT_MARGIN_MS);
    // Unless it lifts it, the server's statement_timeout still holds there.
    const err = await db.transaction((tx) => tx.query('SELECT pg_sleep(3)'), { unbounded: true }).catch((e) => e);
    expect((err as { code?: string }).code).toBe('57014');
  });
});
