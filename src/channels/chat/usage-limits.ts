import type { License } from '../../licenses/index.js';

/** The license keys this module enforces (licenses.types.*.resource_limits in config.yaml, or user_licenses). */
export const LIMIT_KEYS = { connections: 'max_ws_connections', messagesPerMinute: 'messages_per_minute' } as const;

/**
 * A limit from a license: a non-negative number. Anything else (missing, null, -1, a string) means "no limit", so a
 * license type that does not name a key is not throttled by it.
 */
export function limitOf(license: License, key: string): number | null {
  const value = license.resourceLimits[key];
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : null;
}

export type MessageVerdict = { ok: true } | { ok: false; retryAfter: number };

export interface UsageLimits {
  /** Counts one more open connection for the user; null (not counted) when the license's maximum is reached. */
  openConnection(userId: string, license: License): (() => void) | null;
  /** Takes one message from the user's per-minute allowance (shared by every channel). */
  takeMessage(userId: string, license: License): MessageVerdict;
  /** Open connections of a user (for tests and metrics). */
  connections(userId: string): number;
  stop(): void;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * Per-user limits across channels, in this process. Messages use a token bucket per user: a full minute's allowance
 * may be spent at once, then it refills evenly (messages_per_minute / 60 per second), so a burst never exceeds one
 * minute's worth and the long-run rate is exactly the limit. Two numbers per active user; full buckets are swept.
 */
export function createUsageLimits(now: () => number = Date.now): UsageLimits {
  const open = new Map<string, number>();
  const buckets = new Map<string, Bucket>();

  // A bucket idle for a minute is full again: forgetting it changes nothing, and keeps the map to active users.
  const sweep = setInterval(() => {
    const cutoff = now() - 60_000;
    for (const [userId, bucket] of buckets) if (bucket.updatedAt < cutoff) buckets.delete(userId);
  }, 60_000);
  sweep.unref();

  return {
    openConnection(userId, license) {
      const max = limitOf(license, LIMIT_KEYS.connections);
      const current = open.get(userId) ?? 0;
      if (max !== null && current >= max) return null;
      open.set(userId, current + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(userId) ?? 1) - 1;
        if (left <= 0) open.delete(userId);
        else open.set(userId, left);
      };
    },

    takeMessage(userId, license) {
      const perMinute = limitOf(license, LIMIT_KEYS.messagesPerMinute);
      if (perMinute === null) return { ok: true };
      if (perMinute === 0) return { ok: false, retryAfter: 60 };
      const t = now();
      const bucket = buckets.get(userId) ?? { tokens: perMinute, updatedAt: t };
      const rate = perMinute / 60_000; // tokens per millisecond
      bucket.tokens = Math.min(perMinute, bucket.tokens + (t - bucket.updatedAt) * rate);
      bucket.updatedAt = t;
      buckets.set(userId, bucket);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfter: Math.max(1, Math.ceil((1 - bucket.tokens) / rate / 1000)) };
    },

    connections: (userId) => open.get(userId) ?? 0,

    stop() {
      clearInterval(sweep);
      open.clear();
      buckets.clear();
    },
  };
}
