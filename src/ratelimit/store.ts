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

export type Reservation =
  /** The account is locked: no attempt for `retryMs`. */
  | { kind: 'locked'; retryMs: number }
  /** A slot was taken: `n` attempts are now counted (this one included). */
  | { kind: 'slot'; n: number };

export interface LockoutPolicy {
  maxFailures: number;
  baseMs: number;
  factor: number;
  maxMs: number;
  /** Failures older than this (since the first of the series) are forgotten. */
  failureWindowMs: number;
  /** How long past lockouts keep making the next one longer. */
  forgetAfterMs: number;
}

export interface CounterStore {
  readonly kind: 'memory' | 'redis';
  /** Fixed-window counter: counts this hit and returns the count and the time left. */
  hit(key: string, windowMs: number): Promise<WindowHit>;
  /**
   * Takes an attempt slot for an account unless it is locked or every slot is taken. Counted before any password is
   * verified, so of N parallel guesses at most maxFailures reach the hasher.
   */
  reserve(account: string, policy: LockoutPolicy): Promise<Reservation>;
  /**
   * The attempt in slot `n` failed. When it is the one that reaches the maximum, the account is locked for
   * base * factor^(earlier lockouts), capped, and the count starts again; returns the lock's length then.
   */
  fail(account: string, n: number, policy: LockoutPolicy): Promise<number | null>;
  /** A correct password: the account's count and lockout history are cleared. */
  succeed(account: string): Promise<void>;
  /** The attempt ended without a verdict (an error, a refused request): its slot is given back. */
  release(account: string): Promise<void>;
  close(): Promise<void>;
}

/** Keys in one place so both stores agree. */
export const keys = {
  window: (key: string) => `gw:rl:${key}`,
  attempts: (account: string) => `gw:lf:${account}`,
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

/** One process's counters. Expired entries are swept as they are met and on a timer, so the map stays bounded. */
export function createMemoryStore(now: () => number = Date.now): CounterStore {
  const map = new Map<string, Entry>();
  const live = (key: string): Entry | undefined => {
    const e = map.get(key);
    if (e && e.expiresAt <= now()) {
      map.delete(key);
      return undefined;
    }
    return e;
  };
  const set = (key: string, value: number, ttlMs: number) => map.set(key, { value, expiresAt: now() + ttlMs });
  // A sweep a minute bounds memory under a flood of distinct keys (IPs, emails) without touching the hot path.
  const sweep = setInterval(() => {
    const t = now();
    for (const [k, e] of map) if (e.expiresAt <= t) map.delete(k);
  }, 60_000);
  sweep.unref();

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
      if (lock) return { kind: 'locked', retryMs: lock.expiresAt - now() };
      const k = keys.attempts(account);
      const e = live(k);
      if (!e) {
        set(k, 1, policy.failureWindowMs);
        return { kind: 'slot', n: 1 };
      }
      // Every slot is taken by attempts still being verified: the lock they will set is at least the base. A refused
      // reservation is not counted: the slots given back would otherwise leave the count above the maximum, the account
      // refused for the whole failure window without one wrong password and without a lock.
      if (e.value >= policy.maxFailures) return { kind: 'locked', retryMs: policy.baseMs };
      e.value++;
      return { kind: 'slot', n: e.value };
    },
    async fail(account, n, policy) {
      if (n !== policy.maxFailures) return null;
      const level = live(keys.level(account))?.value ?? 0;
      const ms = lockDurationMs(level, policy);
      set(keys.lock(account), 1, ms);
      set(keys.level(account), level + 1, policy.forgetAfterMs);
      map.delete(keys.attempts(account));
      return ms;
    },
    async succeed(account) {
      map.delete(keys.attempts(account));
      map.delete(keys.level(account));
    },
    async release(account) {
      const e = live(keys.attempts(account));
      if (e && e.value > 0) e.value--;
    },
    async close() {
      clearInterval(sweep);
      map.clear();
    },
  };
}
