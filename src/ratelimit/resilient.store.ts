import type { CounterStore } from './store.js';

/**
 * Redis first; when a Redis command fails (down, timeout), the same operation runs on this process's memory store.
 *
 * Why neither fail-open nor fail-closed: failing open would switch brute-force protection off exactly when an
 * attacker can cause it (by loading Redis), and failing closed would turn a Redis outage into a login outage. With
 * the local fallback every process still enforces the limits on its own, so an attacker gains at most a factor of
 * the process count while Redis is down, and sign-ins keep working.
 */
export function createResilientStore(
  primary: CounterStore,
  fallback: CounterStore,
  onFallback: (err: Error) => void,
): CounterStore {
  const attempt =
    <A extends unknown[], R>(op: (s: CounterStore, ...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await op(primary, ...args);
      } catch (err) {
        onFallback(err as Error);
        return op(fallback, ...args);
      }
    };
  return {
    kind: primary.kind,
    hit: attempt((s, key: string, windowMs: number) => s.hit(key, windowMs)),
    reserve: attempt((s, account: string, policy) => s.reserve(account, policy)),
    fail: attempt((s, account: string, n: number, policy) => s.fail(account, n, policy)),
    succeed: attempt((s, account: string) => s.succeed(account)),
    release: attempt((s, account: string) => s.release(account)),
    async close() {
      await Promise.allSettled([primary.close(), fallback.close()]);
    },
  };
}
