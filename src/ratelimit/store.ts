/**
 * Counters behind the rate limits and the login lockout. Each operation is atomic on its own (one event-loop turn in
 * memory, one Lua script in Redis), so parallel requests cannot slip past a count.
 */
export interface WindowHit {
  /** Hits in the current window, this one included. */
  count: number;
  /** Milliseconds until the window ends. */
  resetMs: number;
}

/**
 * One attempt's slot. Settled once, by exactly one of these, in the store that granted it: a verdict sent elsewhere
 * would leave this slot taken and free or count someone else's. A slot never settled (its holder died: kill -9, OOM,
 * a shutdown timeout; or its reservation reached Redis after the caller had given up on it) frees itself when its
 * lease ends.
 */
export interface AttemptSlot {
  /**
   * A wrong password: counted (even after the lease ended: a slow attempt's failure is still a failure). The failure
   * that brings the count to the maximum locks the account for base * factor^(earlier lockouts), capped, and the count
   * starts again; returns the lock's length then.
   */
  fail(): Promise<number | null>;
  /** A correct password: the account's count and lockout history are cleared. */
  succeed(): Promise<void>;
  /** The attempt ended without a verdict (an error, a refused request): the slot is given back, nothing is counted. */
  release(): Promise<void>;
}

export type Reservation =
  /**
   * No attempt for `retryMs`: the account is locked for that long (`lock`), or every slot is taken (`full`: a slot may
   * free sooner, so this refusal is not a lock to remember).
   */
  | { kind: 'locked'; retryMs: number; reason: 'lock' | 'full' }
  /** A slot was taken. */
  | { kind: 'slot'; slot: AttemptSlot };

export interface LockoutPolicy {
  maxFailures: number;
  baseMs: number;
  factor: number;
  maxMs: number;
  /** Failures older than this (since the first of the series) are forgotten. */
  failureWindowMs: number;
  /** How long past lockouts keep making the next one longer. */
  forgetAfterMs: number;
  /** How long an attempt's slot stays taken without a verdict (default ATTEMPT_LEASE_MS). */
  leaseMs?: number;
}

/**
 * A sign-in holds its slot from the reservation (before the password is verified) to its answer: a lookup and a session
 * write, each ended by database.statement_timeout (10 s by default; the client gives up 2 s later), and one hash behind
 * at most auth.argon2.max_queue others of tens of milliseconds each: under 30 s at the defaults. One still unanswered
 * after 60 s has no verdict coming (its process died), and one slower than that still counts its failure: it only stops
 * holding a slot. 60 s is also the default first lockout, so a dead holder never refuses an account longer than one
 * lockout would.
 */
export const ATTEMPT_LEASE_MS = 60_000;

export const leaseMs = (policy: LockoutPolicy) => policy.leaseMs ?? ATTEMPT_LEASE_MS;

export interface CounterStore {
  readonly kind: 'memory' | 'redis';
  /** Fixed-window counter: counts this hit and returns the count and the time left. */
  hit(key: string, windowMs: number): Promise<WindowHit>;
  /**
   * Takes an attempt slot for an account unless it is locked or every slot is taken (counted failures plus attempts in
   * flight reach maxFailures). Taken before any password is verified, so of N parallel guesses at most maxFailures
   * reach the hasher.
   */
  reserve(account: string, policy: LockoutPolicy): Promise<Reservation>;
  close(): Promise<void>;
}

/** Keys in one place so both stores agree. */
export const keys = {
  window: (key: string) => `gw:rl:${key}`,
  /** Counted failures: lives failure_window from the first. */
  failures: (account: string) => `gw:lf:${account}`,
  /** Attempts in flight: slot id -> the end of its lease (a sorted set in Redis). */
  pending: (account: string) => `gw:lp:${account}`,
  lock: (account: string) => `gw:ll:${account}`,
  level: (account: string) => `gw:lv:${account}`,
};

export function lockDurationMs(level: number, policy: LockoutPolicy): number {
  return Math.min(policy.maxMs, Math.round(policy.baseMs * policy.factor ** level));
}

interface Entry {
  value: number;
  expiresAt: number;
}

/**
 * One process's counters, with the same semantics as the Redis store. Expired entries are swept as they are met and on
 * a timer, so the maps stay bounded.
 */
export function createMemoryStore(now: () => number = Date.now): CounterStore {
  const map = new Map<string, Entry>();
  /** Attempts in flight per account: slot id -> the end of its lease. */
  const pending = new Map<string, Map<number, number>>();
  let nextSlot = 0;
  const live = (key: string): Entry | undefined => {
    const e = map.get(key);
    if (e && e.expiresAt <= now()) {
      map.delete(key);
      return undefined;
    }
    return e;
  };
  const set = (key: string, value: number, ttlMs: number) => map.set(key, { value, expiresAt: now() + ttlMs });
  /** Drops the account's ended leases; returns the live ones. */
  const inFlight = (account: string, t = now()): number => {
    const slots = pending.get(account);
    if (!slots) return 0;
    for (const [id, until] of slots) if (until <= t) slots.delete(id);
    if (slots.size === 0) pending.delete(account);
    return slots.size;
  };
  const settle = (account: string, id: number) => {
    const slots = pending.get(account);
    slots?.delete(id);
    if (slots?.size === 0) pending.delete(account);
  };
  // A sweep a minute bounds memory under a flood of distinct keys (IPs, emails) without touching the hot path.
  const sweep = setInterval(() => {
    const t = now();
    for (const [k, e] of map) if (e.expiresAt <= t) map.delete(k);
    for (const account of pending.keys()) inFlight(account, t);
  }, 60_000);
  sweep.unref();

  const slot = (account: string, id: number, policy: LockoutPolicy): AttemptSlot => ({
    async fail() {
      settle(account, id);
      const k = keys.failures(account);
      const e = live(k);
      const n = e ? ++e.value : 1;
      if (!e) set(k, 1, policy.failureWindowMs);
      if (n < policy.maxFailures) return null;
      const level = live(keys.level(account))?.value ?? 0;
      const ms = lockDurationMs(level, policy);
      set(keys.lock(account), 1, ms);
      set(keys.level(account), level + 1, policy.forgetAfterMs);
      map.delete(k);
      return ms;
    },
    async succeed() {
      settle(account, id);
      map.delete(keys.failures(account));
      map.delete(keys.level(account));
    },
    async release() {
      settle(account, id);
    },
  });

  return {
    kind: 'memory',
    async hit(key, windowMs) {
      const k = keys.window(key);
      const e = live(k);
      if (!e) {
        set(k, 1, windowMs);
        return { count: 1, resetMs: windowMs };
      }
      e.value++;
      return { count: e.value, resetMs: e.expiresAt - now() };
    },
    async reserve(account, policy) {
      const lock = live(keys.lock(account));
      if (lock) return { kind: 'locked', retryMs: lock.expiresAt - now(), reason: 'lock' };
      // Every slot is taken by failures or attempts still being verified: the lock they may set is at least the base.
      // A refused reservation is not counted: it holds no slot, so nothing would ever give it back.
      const taken = (live(keys.failures(account))?.value ?? 0) + inFlight(account);
      if (taken >= policy.maxFailures) return { kind: 'locked', retryMs: policy.baseMs, reason: 'full' };
      const id = nextSlot++;
      const slots = pending.get(account) ?? new Map<number, number>();
      pending.set(account, slots.set(id, now() + leaseMs(policy)));
      return { kind: 'slot', slot: slot(account, id, policy) };
    },
    async close() {
      clearInterval(sweep);
      map.clear();
      pending.clear();
    },
  };
}
