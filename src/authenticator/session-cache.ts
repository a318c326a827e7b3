import type { ActiveSession } from './session.store.js';

/**
 * Validated sessions by id, so a bearer check does not cost a database round trip per request.
 *
 * Correctness rules (a revoked session must stop working at once, in every process):
 * - Every session end (the sessions DELETE trigger, LISTEN/NOTIFY) calls `forget`; `forgetUser` serves other
 *   per-user changes (a license or profile change) and `clear` serves a lost listener.
 * - While the listener is down the cache is empty and bypassed (`setEnabled(false)`): notifications sent meanwhile
 *   are lost, so nothing cached may be trusted until LISTEN is back.
 * - A lookup that raced an invalidation of its session is not stored (the NOTIFY may arrive before or after the row):
 *   `forget` marks the loads of that session id in flight, and a user change or a flush (which may concern any
 *   session) bumps an epoch that every load in flight compares. Another session's end does not void a load, so a
 *   batch of reads (lookup-batcher.ts) is not thrown away by an unrelated logout.
 * - An entry is never served past the session's expiresAt, nor older than `ttlMs` (a safety net for anything the
 *   events do not cover).
 */
export interface SessionCache {
  /**
   * The session, from the cache when fresh (synchronously: a hit is on every bearer check and creates no promise),
   * else from `load` (stored when safe).
   */
  lookup(
    sessionId: string,
    load: (sessionId: string) => Promise<ActiveSession | null>,
  ): ActiveSession | Promise<ActiveSession | null>;
  /** Records a new expiry for a cached session (after this process extended it). */
  extended(sessionId: string, expiresAt: Date): void;
  forget(sessionId: string): void;
  forgetUser(userId: string): void;
  clear(): void;
  /** Off: flush and bypass (the listener is down). On: start caching again. */
  setEnabled(enabled: boolean): void;
  readonly enabled: boolean;
  readonly size: number;
  /**
   * Whether nothing is cached and nothing is being loaded into the cache: only then can no entry be stale after a
   * change (a load in flight stores its session when it ends, unless the change's event arrived first).
   */
  readonly idle: boolean;
}

export interface SessionCacheOptions {
  /** Most entries kept; the least recently used go first. 0 disables the cache. */
  maxEntries: number;
  /** Longest an entry is trusted without a database read, in ms. 0 disables the cache. */
  ttlMs: number;
  /** Starts disabled until the session-end listener reports it is up. */
  enabled?: boolean;
  now?: () => number;
}

interface Entry {
  session: ActiveSession;
  /** Date.now() after which the entry is stale: min(cached + ttl, session expiry). */
  staleAt: number;
}

export function createSessionCache(options: SessionCacheOptions): SessionCache {
  const now = options.now ?? Date.now;
  const usable = options.maxEntries > 0 && options.ttlMs > 0;
  const entries = new Map<string, Entry>();
  /** Cached session ids by user, so a user's change drops their entries without a walk over the whole cache. */
  const byUser = new Map<string, Set<string>>();
  let enabled = usable && (options.enabled ?? false);
  /** Bumped by invalidations that may concern any session; a load that saw another epoch at its start is not stored. */
  let epoch = 0;
  /** Loads in flight by session id; `forget` marks them stale. */
  const loading = new Map<string, { loads: number; stale: boolean }>();

  const invalidate = () => {
    epoch++;
  };

  const store = (sessionId: string, entry: Entry) => {
    remove(sessionId);
    entries.set(sessionId, entry);
    const ids = byUser.get(entry.session.userId);
    if (ids) ids.add(sessionId);
    else byUser.set(entry.session.userId, new Set([sessionId]));
  };

  function remove(sessionId: string) {
    const entry = entries.get(sessionId);
    if (!entry) return;
    entries.delete(sessionId);
    const ids = byUser.get(entry.session.userId);
    ids?.delete(sessionId);
    if (ids?.size === 0) byUser.delete(entry.session.userId);
  }

  const removeAll = () => {
    entries.clear();
    byUser.clear();
  };

  async function loadAndStore(sessionId: string, load: (sessionId: string) => Promise<ActiveSession | null>) {
    const startEpoch = epoch;
    let slot = loading.get(sessionId);
    if (!slot) {
      slot = { loads: 0, stale: false };
      loading.set(sessionId, slot);
    }
    slot.loads++;
    let session: ActiveSession | null;
    try {
      session = await load(sessionId);
    } finally {
      slot.loads--;
      if (slot.loads === 0) loading.delete(sessionId);
    }
    if (session && enabled && epoch === startEpoch && !slot.stale) {
      store(sessionId, { session, staleAt: Math.min(now() + options.ttlMs, session.expiresAt.getTime()) });
      if (entries.size > options.maxEntries) {
        const oldest = entries.keys().next().value;
        if (oldest !== undefined) remove(oldest);
      }
    }
    return session;
  }

  return {
    lookup(sessionId, load) {
      if (enabled) {
        const entry = entries.get(sessionId);
        if (entry) {
          if (now() < entry.staleAt && now() < entry.session.expiresAt.getTime()) {
            // Refresh its place in the eviction order: Map iterates in insertion order (same user: index unchanged).
            entries.delete(sessionId);
            entries.set(sessionId, entry);
            return entry.session;
          }
          remove(sessionId);
        }
      }
      return loadAndStore(sessionId, load);
    },

    extended(sessionId, expiresAt) {
      const entry = entries.get(sessionId);
      if (entry) entry.session = { ...entry.session, expiresAt };
    },

    forget(sessionId) {
      const slot = loading.get(sessionId);
      if (slot) slot.stale = true;
      remove(sessionId);
    },

    forgetUser(userId) {
      invalidate();
      for (const id of byUser.get(userId) ?? []) entries.delete(id);
      byUser.delete(userId);
    },

    clear() {
      invalidate();
      removeAll();
    },

    setEnabled(on) {
      invalidate();
      removeAll();
      enabled = usable && on;
    },

    get enabled() {
      return enabled;
    },
    get idle() {
      return entries.size === 0 && loading.size === 0;
    },
    get size() {
      return entries.size;
    },
  };
}
