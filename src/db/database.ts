import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { DataDirLockedError, dataDirError, lockDataDir } from './data-dir-lock.js';

/**
 * The one database module: PostgreSQL through node-postgres when a URL is given, otherwise embedded PostgreSQL
 * (PGlite) in a directory. Nothing outside src/db/ imports a driver; everything else uses this interface.
 */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** A transaction's connection; `exec` runs a multi-statement script in it (a migration). */
export interface Transaction extends Queryable {
  exec(sql: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Where the data lives, fit for a log line (no password). */
  readonly location: string;
  /** Query builder handed to Better Auth (same connections). */
  // biome-ignore lint/suspicious/noExplicitAny: Better Auth brings its own table types.
  readonly kysely: Kysely<any>;
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Runs a multi-statement SQL script (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * LISTEN on a channel; the handler gets each payload. Returns an unsubscribe function. A lost LISTEN connection
   * (a restarted server) is re-established with backoff; notifications sent while it is down are lost, which
   * `onListenerChange` reports so callers can drop whatever those notifications would have invalidated.
   */
  listen(channel: string, handler: (payload: string) => void): Promise<() => Promise<void>>;
  /** Whether the LISTEN connection is established right now (always true for the embedded database). */
  readonly listening: boolean;
  /** Calls `handler(false)` when the LISTEN connection is lost and `handler(true)` once it listens again. */
  onListenerChange(handler: (up: boolean) => void): () => void;
  notify(channel: string, payload: string): Promise<void>;
  /**
   * Takes a session-level advisory lock on a connection of its own, without waiting: null when another process holds
   * it. `onLost` runs if that connection dies (the lock is gone with it). If this process's machine dies instead, the
   * server ends the session, freeing the lock, after about three heartbeats of silence (see listenerHeartbeatMs).
   * PGlite is one process: always granted.
   */
  tryAdvisoryLock(key: number, onLost?: () => void): Promise<AdvisoryLock | null>;
  close(): Promise<void>;
}

export interface AdvisoryLock {
  release(): Promise<void>;
}

export interface TransactionOptions {
  /**
   * Run on a connection of its own without the client-side query timeout (statement_timeout plus a margin), for a
   * transaction that may rightly outlast statement_timeout: a migration. The server's statement_timeout still applies
   * until the transaction lifts it (SET LOCAL statement_timeout). No effect on PGlite, which has no such timeout.
   */
  unbounded?: boolean;
}

export interface DatabaseOptions {
  url: string;
  dataDir: string;
  poolMax: number;
  connectTimeoutSeconds: number;
  statementTimeoutSeconds: number;
  /**
   * Where the LISTEN connection goes; empty: `url`. LISTEN needs a session-level connection: behind PgBouncer in
   * transaction mode, point this at PostgreSQL itself (or a session-mode pool) and `url` at PgBouncer.
   */
  listenUrl?: string;
  /** Parameterised queries as named prepared statements (default true; PostgreSQL only). */
  preparedStatements?: boolean;
  /** Called when prepared statements turn out not to work here (they are then turned off; see preparedStatements). */
  onWarning?: (message: string) => void;
  /** Called for errors on idle connections (a restarted server): logged, never fatal. */
  onBackgroundError?: (err: Error) => void;
  /**
   * How often the LISTEN connection is asked for a round trip, and how long it has to answer, in ms (default 5000). A
   * connection cut without a close (a dead network path, a failover behind a virtual IP) answers nothing but looks
   * alive until TCP keepalive gives up, hours later; meanwhile notifications would be lost unnoticed. The advisory lock
   * connections have the same heartbeat. On both, the server is told to end the session after three heartbeats of
   * silence (see boundOrphanedSession): a process whose machine died does not keep a lock or a LISTEN slot for hours.
   */
  listenerHeartbeatMs?: number;
}

/**
 * node-postgres query configs. Prepared: a parameterised query gets a name derived from its text, so each pool
 * connection parses and plans it once and afterwards only binds and executes (measured here on the session lookup:
 * PostgreSQL's CPU per query 210 -> 60-90 us, the round trip 350 -> 180 us). Our SQL texts are constants, so the
 * statements per connection stay bounded; scripts and parameterless statements go unnamed.
 *
 * Where prepared statements cannot work, `failed` turns them off rather than failing requests: a pooler that does
 * not track them (PgBouncer in transaction mode before 1.21, or with max_prepared_statements = 0: "prepared
 * statement does not exist" / "already exists") turns them off for the process; a statement whose result columns a
 * migration changed under it ("cached plan must not change result type") goes unnamed from then on. The query that
 * met the error is run again unnamed (outside a transaction; inside one, the transaction fails once).
 */
function preparedStatements(enabled: boolean, warn: (message: string) => void) {
  let prepared = enabled;
  const names = new Map<string, string>();
  const unnamed = new Set<string>();
  return {
    config(text: string, params?: readonly unknown[]): pg.QueryConfig {
      const values = params as unknown[] | undefined;
      if (!prepared || values === undefined || unnamed.has(text)) return { text, values };
      let name = names.get(text);
      if (name === undefined) {
        name = `gw_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}`;
        names.set(text, name);
      }
      return { name, text, values };
    },
    /** Whether `err` (from running `query` named) means: run it again unnamed. */
    failed(err: unknown, query: pg.QueryConfig): boolean {
      if (query.name === undefined) return false;
      const code = (err as { code?: string }).code;
      if (code === '26000' || code === '42P05') {
        if (prepared) warn('prepared statements are not kept between queries (a transaction-mode pooler?); turned off');
        prepared = false;
        return true;
      }
      if (code === '0A000' && /cached plan must not change result type/.test((err as Error).message)) {
        unnamed.add(query.text);
        return true;
      }
      return false;
    },
  };
}

/** The LISTEN connection's application_name, unless its URL sets one. */
const LISTENER_APPLICATION_NAME = 'auth-gateway listener';

/** How long after statement_timeout the client stops waiting for an answer (see openPostgres). */
export const QUERY_TIMEOUT_MARGIN_MS = 2000;

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.url ? openPostgres(options) : openPglite(options);
}

function openPostgres(options: DatabaseOptions): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    connectionTimeoutMillis: options.connectTimeoutSeconds * 1000,
    statement_timeout: options.statementTimeoutSeconds * 1000,
    // The server ends a statement at statement_timeout; a connection that cannot answer at all (a network cut, a
    // half-open socket after a failover) would otherwise leave its query waiting for TCP to give up, minutes later.
    // The client gives up QUERY_TIMEOUT_MARGIN_MS after the server would have, and the pool drops that connection.
    query_timeout: options.statementTimeoutSeconds * 1000 + QUERY_TIMEOUT_MARGIN_MS,
    keepAlive: true,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its server must not crash the process; the next query reports the outage.
  pool.on('error', (err) => options.onBackgroundError?.(err));
  // A checked-out client (a transaction, Better Auth's query builder) whose server goes away emits 'error' too, where
  // the pool's idle handler is not attached: without a listener of its own that would end the process. The query in
  // flight still rejects, and the pool discards the client on release.
  pool.on('connect', (client) => {
    client.on('error', (err) => options.onBackgroundError?.(err));
  });
  const kysely = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const statements = preparedStatements(options.preparedStatements ?? true, (message) => options.onWarning?.(message));
  const handlers = new Map<string, Set<(payload: string) => void>>();
  const listener = createListener(options, handlers);
  const heartbeatMs = options.listenerHeartbeatMs ?? 5000;

  /** A connection for an unbounded transaction: the pool's settings but for query_timeout (see TransactionOptions). */
  const connectUnbounded = async (): Promise<pg.Client> => {
    const client = new pg.Client({
      connectionString: options.url,
      connectionTimeoutMillis: options.connectTimeoutSeconds * 1000,
      statement_timeout: options.statementTimeoutSeconds * 1000,
      // Without query_timeout, a connection cut silently while it waits (for a lock, say) is noticed by TCP keepalive
      // alone: probes start after 10 s of silence instead of the system's default two hours.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    client.on('error', (err) => options.onBackgroundError?.(err));
    await client.connect();
    return client;
  };

  return {
    kind: 'postgres',
    location: redactUrl(options.url),
    kysely,
    async query<R>(sql: string, params?: readonly unknown[]) {
      const query = statements.config(sql, params);
      const res = await pool.query(query).catch((err: unknown) => {
        if (!statements.failed(err, query)) throw err;
        return pool.query(statements.config(sql, params));
      });
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    },
    async transaction(fn, txOptions) {
      const own = txOptions?.unbounded ? await connectUnbounded() : undefined;
      const client = own ?? (await pool.connect());
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn({
          async query<R>(sql: string, params?: readonly unknown[]) {
            const query = statements.config(sql, params);
            const res = await client.query(query).catch((err: unknown) => {
              statements.failed(err, query); // the transaction is aborted: it fails; later ones run unnamed
              throw err;
            });
            return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
          },
          async exec(sql: string) {
            await client.query(sql);
          },
        });
        await client.query('COMMIT');
        return result;
      } catch (err) {
        // A connection that cannot roll back (it timed out, or is gone) is dropped, not handed to the next caller.
        broken = await client.query('ROLLBACK').then(
          () => undefined,
          (rollbackErr: unknown) => (rollbackErr instanceof Error ? rollbackErr : new Error('ROLLBACK failed')),
        );
        throw err;
      } finally {
        if (own) await own.end().catch(() => {});
        else (client as pg.PoolClient).release(broken);
      }
    },
    async exec(sql) {
      await pool.query(sql);
    },
    async listen(channel, handler) {
      let set = handlers.get(channel);
      const fresh = !set;
      if (!set) {
        set = new Set();
        handlers.set(channel, set);
      }
      set.add(handler);
      // A listener connected from now on LISTENs every channel in `handlers`; LISTEN twice is a no-op.
      const client = await listener.ensure();
      if (client && fresh) await client.query(`LISTEN ${quoteIdent(channel)}`).catch(() => {});
      return async () => {
        set.delete(handler);
      };
    },
    get listening() {
      return listener.up;
    },
    onListenerChange: (handler) => listener.onChange(handler),
    async notify(channel, payload) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async tryAdvisoryLock(key, onLost) {
      // Not a pool connection: the lock lives as long as this session, and the pool recycles idle clients. A session
      // lock needs a real session, so it takes the LISTEN URL (which bypasses a transaction-mode pooler) when set.
      const client = new pg.Client({
        connectionString: options.listenUrl || options.url,
        keepAlive: true,
        connectionTimeoutMillis: options.connectTimeoutSeconds * 1000,
      });
      let released = false;
      let heartbeat: NodeJS.Timeout | undefined;
      // Once, however it is noticed: an error, the end of the connection, or a heartbeat without an answer.
      const lose = (err?: Error) => {
        if (released) return;
        released = true;
        clearInterval(heartbeat);
        if (err) options.onBackgroundError?.(err);
        client.end().catch(() => {});
        onLost?.();
      };
      client.on('error', lose);
      await client.connect();
      try {
        // Before the lock is taken: no moment where this session holds it without the server-side bound.
        await boundOrphanedSession(client, heartbeatMs);
        const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key]);
        if (!rows[0]?.locked) {
          released = true;
          await client.end();
          return null;
        }
      } catch (err) {
        released = true;
        await client.end().catch(() => {});
        throw err;
      }
      client.once('end', () => lose());
      // A connection cut without a FIN or RST errors on neither side. Here the heartbeat notices, as the listener's does,
      // and the process stops believing it holds the lock. The server would keep the session, and the lock, until its
      // TCP keepalive gives up (two hours by default) but for boundOrphanedSession: about three heartbeats of silence.
      // The heartbeat also keeps a live holder from ever being idle that long.
      heartbeat = setInterval(() => {
        answersWithin(client, heartbeatMs).catch((err: Error) => lose(err));
      }, heartbeatMs);
      heartbeat.unref();
      return {
        async release() {
          if (released) return;
          released = true;
          clearInterval(heartbeat);
          await client.end().catch(() => {}); // ending the session releases the lock
        },
      };
    },
    async close() {
      await listener.close();
      // Kysely ends the pool only if it ever used it; a process that only ran raw queries (npm run migrate) would
      // otherwise wait for the idle timer before exiting.
      await kysely.destroy();
      if (!pool.ended) await pool.end();
    },
  };
}

/**
 * Tells the server to end this session once its client has gone silent, as when the client's machine dies or its
 * network path goes away for good: no FIN or RST reaches the server, which would otherwise keep the session (and any
 * advisory lock or LISTEN it holds) until its TCP keepalive gives up, two hours by default. For connections that run a
 * heartbeat every `heartbeatMs`, which keeps a live one from ever being idle that long:
 * - idle_session_timeout (PostgreSQL 14+; older servers do not know it, and are left to the next layer) ends a session
 *   idle for three heartbeats;
 * - the server's TCP keepalives probe a socket silent for three heartbeats, and drop it after three unanswered probes
 *   one heartbeat apart (a dead machine answers none; this works on every version).
 * SET rather than startup options: a session-mode pooler on the LISTEN URL refuses those. Never on PGlite, which
 * stops answering altogether once idle_session_timeout expires.
 */
async function boundOrphanedSession(client: pg.Client, heartbeatMs: number): Promise<void> {
  const intervalSeconds = Math.max(1, Math.ceil(heartbeatMs / 1000));
  const keepalives =
    `SET tcp_keepalives_idle = ${3 * intervalSeconds}; SET tcp_keepalives_interval = ${intervalSeconds}; ` +
    'SET tcp_keepalives_count = 3';
  try {
    await client.query(`SET idle_session_timeout = ${Math.ceil(3 * heartbeatMs)}; ${keepalives}`);
  } catch (err) {
    if ((err as { code?: unknown }).code !== '42704') throw err; // undefined_object: before PostgreSQL 14
    await client.query(keepalives);
  }
}

/** A heartbeat: one round trip on a connection of our own, rejected when no answer comes within `ms`. */
async function answersWithin(client: pg.Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('connection did not answer a heartbeat')), ms);
  });
  try {
    await Promise.race([client.query('SELECT 1'), silent]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The one LISTEN connection of a PostgreSQL database: connects on first use, re-LISTENs every channel after a lost
 * connection (retrying with capped exponential backoff), and reports up/down changes.
 */
function createListener(options: DatabaseOptions, handlers: Map<string, Set<(payload: string) => void>>) {
  let client: pg.Client | null = null;
  let connecting: Promise<pg.Client | null> | null = null;
  let retry: NodeJS.Timeout | null = null;
  let attempt = 0;
  let closed = false;
  let up = false;
  const watchers = new Set<(up: boolean) => void>();
  /** Ends the connected client as lost (set with `client`). */
  let loseClient: ((err: Error) => void) | null = null;
  const heartbeatMs = options.listenerHeartbeatMs ?? 5000;
  let probing = false;

  const setUp = (value: boolean) => {
    if (up === value) return;
    up = value;
    for (const watcher of watchers) watcher(value);
  };

  const scheduleRetry = () => {
    if (closed || retry) return;
    // 100 ms, 200 ms, ... capped at 5 s: quick after a blip, gentle on a server that is down for long.
    const delay = Math.min(5000, 100 * 2 ** attempt++);
    retry = setTimeout(() => {
      retry = null;
      void ensure();
    }, delay);
    retry.unref();
  };

  async function connect(): Promise<pg.Client> {
    const next = new pg.Client({
      connectionString: options.listenUrl || options.url,
      // Named in pg_stat_activity (an application_name in the URL wins): its last query is mostly the heartbeat's.
      application_name: LISTENER_APPLICATION_NAME,
      keepAlive: true,
      connectionTimeoutMillis: options.connectTimeoutSeconds * 1000,
    });
    let lost = false;
    const onLost = (err?: Error) => {
      if (lost) return;
      lost = true;
      if (err) options.onBackgroundError?.(err);
      next.end().catch(() => {});
      if (client === next) {
        client = null;
        loseClient = null;
        setUp(false);
        scheduleRetry();
      }
    };
    next.on('error', onLost);
    next.on('end', () => onLost());
    next.on('notification', (msg) => {
      for (const h of handlers.get(msg.channel) ?? []) h(msg.payload ?? '');
    });
    try {
      await next.connect();
      await boundOrphanedSession(next, heartbeatMs); // the heartbeat below keeps this connection from idling that long
      for (const channel of handlers.keys()) await next.query(`LISTEN ${quoteIdent(channel)}`);
    } catch (err) {
      lost = true;
      await next.end().catch(() => {});
      throw err;
    }
    if (lost || closed) {
      await next.end().catch(() => {});
      throw new Error('LISTEN connection closed while connecting');
    }
    client = next;
    loseClient = onLost;
    attempt = 0;
    setUp(true);
    return next;
  }

  /** One round trip on the LISTEN connection; no answer within heartbeatMs ends it as lost (then reconnects). */
  function probe(): void {
    const current = client;
    const lose = loseClient;
    if (!current || !lose || probing) return;
    probing = true;
    answersWithin(current, heartbeatMs)
      .catch((err: Error) => {
        if (client === current) lose(err);
      })
      .finally(() => {
        probing = false;
      });
  }
  const heartbeat = setInterval(probe, heartbeatMs);
  heartbeat.unref();

  /** The connected client, connecting if needed; null (and a retry scheduled) when the server cannot be reached. */
  function ensure(): Promise<pg.Client | null> {
    if (client) return Promise.resolve(client);
    if (closed) return Promise.resolve(null);
    connecting ??= connect()
      .catch((err: Error) => {
        options.onBackgroundError?.(err);
        scheduleRetry();
        return null;
      })
      .finally(() => {
        connecting = null;
      });
    return connecting;
  }

  return {
    ensure,
    get up() {
      return up;
    },
    onChange(handler: (up: boolean) => void) {
      watchers.add(handler);
      return () => watchers.delete(handler);
    },
    async close() {
      closed = true;
      clearInterval(heartbeat);
      if (retry) clearTimeout(retry);
      retry = null;
      const current = client;
      client = null;
      loseClient = null;
      setUp(false);
      watchers.clear();
      await current?.end().catch(() => {});
    },
  };
}

async function openPglite(options: DatabaseOptions): Promise<Database> {
  const dir = join(options.dataDir, 'pgdata');
  // What the file system throws here (a DATA_DIR below a file or not writable, a full volume: PGlite throws
  // Emscripten's ErrnoError, not an Error) becomes a DataDirError naming the path and the errno.
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw dataDirError(dir, err);
  }
  // One process at a time: a second PGlite on the same files silently loses writes (the CLI beside a running gateway).
  const lock = await lockDataDir(dir).catch((err: unknown) => {
    throw err instanceof DataDirLockedError ? err : dataDirError(options.dataDir, err); // the lock file is beside dir
  });
  const db = await PGlite.create(dir).catch((err: unknown) => {
    lock.release();
    throw dataDirError(dir, err);
  });
  const kysely = new Kysely({ dialect: new PGliteDialect(db) });
  const wrap = <R>(res: { rows: unknown[]; affectedRows?: number }): QueryResult<R> => ({
    rows: res.rows as R[],
    rowCount: res.affectedRows ?? res.rows.length,
  });
  return {
    kind: 'pglite',
    location: dir,
    kysely,
    async query<R>(sql: string, params?: readonly unknown[]) {
      return wrap<R>(await db.query(sql, params as unknown[] | undefined));
    },
    transaction(fn) {
      return db.transaction((tx) =>
        fn({
          async query<R>(sql: string, params?: readonly unknown[]) {
            return wrap<R>(await tx.query(sql, params as unknown[] | undefined));
          },
          async exec(sql: string) {
            await tx.exec(sql);
          },
        }),
      );
    },
    async exec(sql) {
      await db.exec(sql);
    },
    async listen(channel, handler) {
      const unsubscribe = await db.listen(channel, handler);
      return unsubscribe;
    },
    // In-process: notifications cannot be lost to a dropped connection.
    listening: true,
    onListenerChange: () => () => {},
    async notify(channel, payload) {
      await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async tryAdvisoryLock() {
      return { async release() {} };
    },
    async close() {
      try {
        await db.close();
      } finally {
        lock.release();
      }
    },
  };
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Query parameters whose values are shown in `location`; every other value is masked. */
const HARMLESS_URL_PARAMETERS = new Set(['sslmode', 'application_name', 'connect_timeout']);

/**
 * The URL with every secret masked: the userinfo password, and the value of every query parameter not known to be
 * harmless (libpq and node-postgres take `password`, `sslpassword` and more from the query). A string that does not
 * parse is not echoed at all.
 */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const name of new Set(u.searchParams.keys())) {
      if (!HARMLESS_URL_PARAMETERS.has(name)) u.searchParams.set(name, '***');
    }
    u.hash = '';
    return u.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

/** PostgreSQL SQLSTATE 23505. */
export function isUniqueViolation(err: unknown): boolean {
  return hasCode(err, '23505');
}

/** PostgreSQL SQLSTATE 23503 (foreign_key_violation): a row inserted for a user or session deleted meanwhile. */
export function isForeignKeyViolation(err: unknown): boolean {
  return hasCode(err, '23503');
}

/** The database cannot answer right now (refused, reset, shutting down, timed out, statement cancelled). */
export function isUnavailableError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) return true;
      // Class 08 connection exceptions; 57P01-57P03 admin shutdown, crash shutdown, cannot connect now; 57014 a
      // statement cancelled (statement_timeout: the database is too slow to answer now).
      if (code.startsWith('08') || ['57P01', '57P02', '57P03', '57014'].includes(code)) return true;
    }
    const message = (e as { message?: unknown }).message;
    if (
      typeof message === 'string' &&
      /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|connection is closed|Cannot use a pool after calling end|driver has already been destroyed|PGlite is closed/i.test(
        message,
      )
    ) {
      return true;
    }
  }
  return false;
}

function hasCode(err: unknown, code: string): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code) return true;
  }
  return false;
}
