import type { Queryable } from '../db/index.js';
import type { LicenseRow } from '../licenses/index.js';
import { createLookupBatcher, type LookupBatcherOptions } from './lookup-batcher.js';

export interface ActiveSession {
  id: string;
  userId: string;
  expiresAt: Date;
  email: string;
  name: string;
  license: LicenseRow | null;
  /** Last use as written to the database (throttled: see touch in authenticator.ts). */
  lastUsedAt: Date;
  /**
   * Where the idle timeout counts from: the last use this process saw, or lastUsedAt when later. One record per
   * session, shared by every copy of it this process reads, so it outlives a cached entry (see createLastSeen in
   * authenticator.ts); absent with no idle timeout. Other processes' uses are not in it: a cached session idle by it
   * is read again before it is refused (see withSession in authenticator.ts).
   */
  lastSeen?: LastSeen;
  /** The user's own IP allow list (null: none). */
  ipAllowlist: string[] | null;
  /** The channel of the last recorded use (null: none recorded since sign-in). */
  lastChannel: string | null;
}

/** A session's last use in this process (Date.now() ms); written in place on every use. */
export interface LastSeen {
  ms: number;
}

export interface IdentityRow {
  userId: string;
  email: string;
  name: string;
  license: LicenseRow | null;
}

interface Row {
  id: string;
  user_id: string;
  expires_at: Date | string;
  email: string;
  name: string;
  license_type: string | null;
  features: Record<string, unknown> | null;
  resource_limits: Record<string, unknown> | null;
  last_used_at?: Date | string;
  ip_allowlist?: string[] | null;
  last_channel?: string | null;
}

interface SessionRow extends Row {
  /** Not expired and its user not disabled (a session refused for a reason that can change back). */
  active: boolean;
}

const licenseOf = (r: Pick<Row, 'license_type' | 'features' | 'resource_limits'>): LicenseRow | null =>
  r.license_type === null
    ? null
    : { license_type: r.license_type, features: r.features, resource_limits: r.resource_limits };

/**
 * One batch query at a time, of at most 100 ids. Measured here (2 cores, 4,000 first-time WebSocket handshakes at 50
 * in flight, medians of 6 to 18 runs): 3.7k handshakes/s with a query per lookup, 4.2k/s with two batches at once,
 * 4.8k/s with one, 3.3k/s with four; the gateway's CPU per handshake fell from about 270 to 200 us and PostgreSQL's
 * from about 90 to 50 us. A lookup waits at most for the query in flight, then goes in the next; a query still running
 * after 250 ms (a few ms is usual) lets the next batch go beside it, so one stuck connection does not hold up every
 * lookup.
 */
const DEFAULT_LOOKUPS: LookupBatcherOptions = { maxInFlight: 1, maxBatch: 100, stallMs: 250 };

/**
 * Session ids known to have no row: about 100 bytes each, so 1 MB at most. An hour: the fact never changes, the limit
 * only lets a process forget ids nobody presents any more (one still presented then costs one more read an hour).
 */
export const DEFAULT_GONE_SESSIONS: GoneSessionsOptions = { max: 10_000, ttlMs: 3_600_000 };

export interface GoneSessionsOptions {
  /** Most ids remembered; the oldest go first. */
  max: number;
  /** How long an id is remembered, in ms. */
  ttlMs: number;
}

/** A lookup of a gone session: one settled promise shared by all of them (no allocation per refused check). */
const NO_SESSION: Promise<null> = Promise.resolve(null);

/**
 * Session ids whose row does not exist, so a signed token of an ended session (logout, revocation, deletion) costs an
 * HMAC and a map read, not a database read per request (GET /auth/session is exempt from the rate limits). Safe to
 * keep whatever happens meanwhile, so it needs no session events: a missing row never comes back. Ids are random
 * (ids.ts) and never reused, and an id reaches a client only after its row committed (a token is minted once the
 * statement or transaction that created the session has returned; a cookie names a row Better Auth read), so no lookup
 * runs before its row exists. Only a missing row: an expired session or a disabled user can come back, and is read.
 */
function createGoneSessions(options: GoneSessionsOptions) {
  /** Id -> Date.now() when forgotten; in insertion order, which is expiry order (one TTL). */
  const gone = new Map<string, number>();
  return {
    has(sessionId: string): boolean {
      const until = gone.get(sessionId);
      if (until === undefined) return false;
      if (Date.now() < until) return true;
      gone.delete(sessionId);
      return false;
    },
    add(sessionId: string): void {
      const now = Date.now();
      gone.delete(sessionId);
      gone.set(sessionId, now + options.ttlMs);
      for (const [id, until] of gone) {
        if (until > now && gone.size <= options.max) break;
        gone.delete(id);
      }
    },
    get size() {
      return gone.size;
    },
  };
}

/** The session and identity queries of the Authenticator: one indexed round trip per lookup (or per batch of them). */
export function createSessionStore(
  db: Queryable,
  options: {
    flushMs?: number;
    log?: { warn(obj: object, msg: string): void };
    /** How session lookups are batched (see lookup-batcher.ts). */
    lookups?: LookupBatcherOptions;
    /** How many ids of sessions without a row are remembered, and how long (see createGoneSessions). */
    goneSessions?: GoneSessionsOptions;
  } = {},
) {
  const gone = createGoneSessions(options.goneSessions ?? DEFAULT_GONE_SESSIONS);
  const flushMs = options.flushMs ?? 1000;
  let uses = new Map<string, { minIntervalSeconds: number; channel: string }>();
  let timer: NodeJS.Timeout | null = null;
  let writing: Promise<void> | null = null;
  let closed = false;

  const schedule = () => {
    if (timer || uses.size === 0 || closed) return;
    timer = setTimeout(() => void flushUses(), flushMs);
    timer.unref();
  };

  /** One UPDATE for the gathered uses. Ids sorted: two processes lock shared rows in one order (no deadlock). */
  async function write(entries: Array<[string, { minIntervalSeconds: number; channel: string }]>): Promise<void> {
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    try {
      await db.query(
        `UPDATE sessions s SET last_used_at = now(), last_channel = u.channel
           FROM unnest($1::text[], $2::text[], $3::int[]) AS u(id, channel, min_interval)
          WHERE s.id = u.id
            AND (s.last_used_at IS NULL OR s.last_channel IS NULL
                 OR s.last_used_at < now() - make_interval(secs => u.min_interval))`,
        [entries.map(([id]) => id), entries.map(([, u]) => u.channel), entries.map(([, u]) => u.minIntervalSeconds)],
      );
    } catch (err) {
      // Last use is bookkeeping for the idle timeout and the sessions list: losing one batch of it (the database was
      // away) only makes those sessions look unused since their previous write.
      options.log?.warn(
        { err: { message: (err as Error).message }, uses: entries.length },
        'session uses not recorded',
      );
    }
  }

  /**
   * Writes what is gathered. One write at a time: uses made meanwhile keep gathering (one entry per session, so a
   * slow or absent database costs memory bounded by the active sessions, not a queue of writes) and go next.
   */
  function flushUses(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = null;
    if (writing) return writing.then(() => flushUses());
    if (uses.size === 0) return Promise.resolve();
    const entries = [...uses];
    uses = new Map();
    writing = write(entries).finally(() => {
      writing = null;
      schedule();
    });
    return writing;
  }

  async function findActiveMany(ids: readonly string[]): Promise<ActiveSession[]> {
    // Inactive rows come back too (flagged), so an id without any row is told apart from an expired or disabled one.
    const { rows } = await db.query<SessionRow>(
      `SELECT s.id, s.user_id, s.expires_at, u.email, u.name, l.license_type, l.features, l.resource_limits,
              s.last_used_at, s.last_channel, u.ip_allowlist, s.expires_at > now() AND u.disabled_at IS NULL AS active
         FROM sessions s
         JOIN users u ON u.id = s.user_id
         LEFT JOIN user_licenses l ON l.user_id = s.user_id
        WHERE s.id = ANY($1::text[])`,
      [ids],
    );
    if (rows.length < ids.length) {
      const present = new Set(rows.map((r) => r.id));
      for (const id of ids) if (!present.has(id)) gone.add(id);
    }
    return rows
      .filter((r) => r.active)
      .map(
        (r): ActiveSession => ({
          id: r.id,
          userId: r.user_id,
          expiresAt: new Date(r.expires_at),
          email: r.email,
          name: r.name,
          license: licenseOf(r),
          lastUsedAt: new Date(r.last_used_at ?? Date.now()),
          ipAllowlist: r.ip_allowlist ?? null,
          lastChannel: r.last_channel ?? null,
        }),
      );
  }
  const lookUp = createLookupBatcher(findActiveMany, (s) => s.id, options.lookups ?? DEFAULT_LOOKUPS);
  const findActive = (sessionId: string): Promise<ActiveSession | null> =>
    gone.has(sessionId) ? NO_SESSION : lookUp(sessionId);

  return {
    /**
     * The active session with this id, its user and license; null when it is gone, expired or its user disabled.
     * Concurrent lookups share queries (see lookup-batcher.ts); a session known to be gone costs none.
     */
    findActive,

    /** How many ids of sessions without a row are remembered (for tests). */
    get goneSessions(): number {
      return gone.size;
    },

    /**
     * Records a use, written behind: uses are gathered and written together every `flushMs` (one UPDATE for all of
     * them), so authenticating never waits for a write. A use is skipped in the database too when one was recorded
     * in the last `minIntervalSeconds` (another process may have written it).
     */
    touch(sessionId: string, minIntervalSeconds: number, channel: string): void {
      if (closed) return; // the gateway is stopping: its database is about to close
      uses.set(sessionId, { minIntervalSeconds, channel });
      schedule();
    },

    /** Writes the uses gathered so far (at close, and for tests that read last_used_at). */
    flushUses,

    /** Stops the timer and writes what is pending. */
    /** Writes what is pending, waiting at most `closeWaitMs` (a database that is away must not hold up a shutdown). */
    async close(closeWaitMs = 2000): Promise<void> {
      closed = true;
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([
        flushUses(),
        new Promise<void>((resolve) => {
          timeout = setTimeout(resolve, closeWaitMs);
        }),
      ]);
      clearTimeout(timeout);
    },

    /**
     * Moves the expiry to `expiresAt` unless it is already within `minGainSeconds` of it (another request extended it
     * first), so concurrent requests extend once. Returns whether this call extended it.
     */
    async extend(sessionId: string, expiresAt: Date, minGainSeconds: number): Promise<boolean> {
      const { rowCount } = await db.query(
        `UPDATE sessions SET expires_at = $2, updated_at = now()
          WHERE id = $1 AND expires_at > now() AND expires_at < $2::timestamptz - make_interval(secs => $3)`,
        [sessionId, expiresAt, minGainSeconds],
      );
      return rowCount > 0;
    },

    /** The session Better Auth knows by its opaque token (a sign-in through /api/auth/*). */
    async findByToken(token: string): Promise<{ id: string; userId: string; expiresAt: Date } | null> {
      const { rows } = await db.query<{ id: string; user_id: string; expires_at: Date | string }>(
        'SELECT id, user_id, expires_at FROM sessions WHERE token = $1 AND expires_at > now()',
        [token],
      );
      const r = rows[0];
      return r ? { id: r.id, userId: r.user_id, expiresAt: new Date(r.expires_at) } : null;
    },

    async delete(sessionId: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM sessions WHERE id = $1', [sessionId]);
      return rowCount > 0;
    },

    async findByChannelLink(channelType: string, channelUserId: string): Promise<IdentityRow | null> {
      const { rows } = await db.query<Row>(
        `SELECT u.id AS user_id, u.email, u.name, l.license_type, l.features, l.resource_limits
           FROM user_channel_links c
           JOIN users u ON u.id = c.user_id
           LEFT JOIN user_licenses l ON l.user_id = u.id
          WHERE c.channel_type = $1 AND c.channel_user_id = $2 AND u.disabled_at IS NULL`,
        [channelType, channelUserId],
      );
      const r = rows[0];
      return r ? { userId: r.user_id, email: r.email, name: r.name, license: licenseOf(r) } : null;
    },
  };
}

export type SessionStore = ReturnType<typeof createSessionStore>;
