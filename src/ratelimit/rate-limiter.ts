import type { RateLimitRule } from '../config/schema.js';
import { AppError } from '../errors/index.js';
import { clientKey } from './client-key.js';
import type { CounterStore } from './store.js';

export interface RateLimitVerdict {
  rule: RateLimitRule;
  count: number;
  /** This hit is the first one over the limit in its window (worth one audit row, not one per request). */
  firstOver: boolean;
}

/**
 * Per-IP limits from a table of path prefixes: the longest matching prefix decides, so a route added later is
 * covered by its prefix (or a catch-all) without code. A rule with max 0 exempts its prefix; an `exact` rule matches
 * its path only. Rules naming one `bucket` share one counter per IP (config loading checks they agree on its limit):
 * twin routes cannot be alternated for twice the limit.
 */
export function createRateLimiter(store: CounterStore, rules: readonly RateLimitRule[]) {
  const sorted = [...rules].sort((a, b) => b.prefix.length - a.prefix.length);
  const ruleFor = (path: string) => sorted.find((r) => (r.exact ? path === r.prefix : path.startsWith(r.prefix)));
  return {
    ruleFor,
    /** Counts the request; throws 429 RATE_LIMITED (with retryAfter) over the limit. `onOver` runs before the throw. */
    async check(path: string, ip: string, onOver?: (v: RateLimitVerdict) => void): Promise<void> {
      const rule = ruleFor(path);
      if (!rule || rule.max === 0) return;
      const { count, resetMs } = await store.hit(`${rule.bucket ?? rule.prefix}|${clientKey(ip)}`, rule.window * 1000);
      if (count <= rule.max) return;
      onOver?.({ rule, count, firstOver: count === rule.max + 1 });
      throw new AppError('RATE_LIMITED', undefined, { retryAfter: Math.max(1, Math.ceil(resetMs / 1000)) });
    },
  };
}

/**
 * The path a rule is matched against, as the handlers will see it: no query, dot segments resolved (Better Auth
 * routes on `new URL(...)`, which turns `/api/auth/./sign-in/email` into `/api/auth/sign-in/email`), then
 * percent-decoded (find-my-way routes decoded paths).
 */
export function requestPath(url: string): string {
  let path = url.split('?', 1)[0] ?? '/';
  try {
    path = new URL(path, 'http://gateway.invalid').pathname;
  } catch {
    // keep it as sent
  }
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
