/**
 * A minute: an ongoing refusal still shows in the audit log every minute, as a rate limit hit does under the default
 * rules (one row per rule, client and window), while a loop at request rate writes one row, not thousands.
 */
export const ONCE_WINDOW_MS = 60_000;
/**
 * Keys are a few dozen bytes: 10,000 of them is well under a few megabytes, and more distinct keys in one window than
 * that means a flood whose rows are the least of the trouble.
 */
export const ONCE_MAX_KEYS = 10_000;

export interface OncePerWindow {
  /** True the first time `key` is seen in its window (write the row), false for its repeats until the window ends. */
  first(key: string): boolean;
}

/**
 * For audit events a client can repeat at request rate where no rate limit stops it (an ip.refused on GET
 * /auth/session, which is exempt): written once per key and window, as the rate limiter writes rate_limit.hit once per
 * rule, client and window (its first hit over the limit). In memory, per process: every entry has the same window and
 * the clock is monotonic (a wall clock set back would reorder them), so the map's insertion order is its expiry order
 * and expired entries are dropped from the front as keys arrive (no timer). Past maxKeys the oldest is forgotten
 * early: its next repeat writes a row again, which costs a row, never memory.
 */
export function createOncePerWindow({
  windowMs = ONCE_WINDOW_MS,
  maxKeys = ONCE_MAX_KEYS,
  now = () => performance.now(),
}: {
  windowMs?: number;
  maxKeys?: number;
  now?: () => number;
} = {}): OncePerWindow {
  /** key -> the end of its window. */
  const seen = new Map<string, number>();
  return {
    first(key) {
      const t = now();
      for (const [k, until] of seen) {
        if (until > t) break;
        seen.delete(k);
      }
      if (seen.has(key)) return false;
      if (seen.size >= maxKeys) {
        const oldest = seen.keys().next();
        if (!oldest.done) seen.delete(oldest.value);
      }
      seen.set(key, t + windowMs);
      return true;
    },
  };
}
