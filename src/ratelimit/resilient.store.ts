import type { AttemptSlot, CounterStore, LockoutPolicy, Reservation } from './store.js';

/**
 * Redis first; when a Redis command fails (down, timeout), the same operation runs on this process's memory store.
 *
 * Why neither fail-open nor fail-closed: failing open would switch brute-force protection off exactly when an
 * attacker can cause it (by loading Redis), and failing closed would turn a Redis outage into a login outage. With
 * the local fallback every process still enforces the limits on its own, so an attacker gains at most a factor of
 * the process count while Redis is down, and sign-ins keep working.
 *
 * Every lock this process sets or is told about, in either store, is remembered here until it ends and refuses the
 * account before either store is asked: a lock held in Redis still holds while Redis is down, and one set in memory
 * during an outage (its Retry-After already sent) still holds once Redis is back. Without that, each flap of Redis
 * would give another max_failures guesses.
 *
 * An attempt's verdict goes to the store that granted its slot, whichever answers now: a slot taken in memory during an
 * outage is settled in memory after Redis is back (in Redis it would free or count another process's attempt, and the
 * memory slot would stay taken). A slot taken in Redis whose verdict cannot reach it frees itself there when its lease
 * ends; a failure is then counted in memory, so it is not forgotten.
 */
export function createResilientStore(
  primary: CounterStore,
  fallback: CounterStore,
  onFallback: (err: Error) => void,
  now: () => number = Date.now,
): CounterStore {
  const fellBack = (err: unknown) => onFallback(err as Error);

  /** Account -> when its lock ends. Only locked accounts are in it, so lookups stay one Map read. */
  const locks = new Map<string, number>();
  const remember = (account: string, ms: number | null) => {
    if (ms === null) return;
    const until = now() + ms;
    if ((locks.get(account) ?? 0) < until) locks.set(account, until);
  };
  const lockedFor = (account: string): number => {
    const until = locks.get(account);
    if (until === undefined) return 0;
    const left = until - now();
    if (left <= 0) locks.delete(account);
    return left;
  };
  // A sweep a minute bounds the map under a flood of locked accounts that are never asked about again.
  const sweep = setInterval(() => {
    const t = now();
    for (const [account, until] of locks) if (until <= t) locks.delete(account);
  }, 60_000);
  sweep.unref();

  const failLocally = async (account: string, policy: LockoutPolicy): Promise<number | null> => {
    const r = await fallback.reserve(account, policy);
    return r.kind === 'slot' ? r.slot.fail() : null; // refused: this process has it locked or full already
  };

  const primarySlot = (slot: AttemptSlot, account: string, policy: LockoutPolicy): AttemptSlot => ({
    fail: async () => {
      const ms = await slot.fail().catch((err) => {
        fellBack(err);
        return failLocally(account, policy);
      });
      remember(account, ms);
      return ms;
    },
    succeed: () => slot.succeed().catch(fellBack),
    release: () => slot.release().catch(fellBack),
  });

  const fallbackSlot = (slot: AttemptSlot, account: string): AttemptSlot => ({
    ...slot,
    fail: async () => {
      const ms = await slot.fail();
      remember(account, ms);
      return ms;
    },
  });

  return {
    kind: primary.kind,
    async hit(key, windowMs) {
      try {
        return await primary.hit(key, windowMs);
      } catch (err) {
        fellBack(err);
        return fallback.hit(key, windowMs);
      }
    },
    async reserve(account, policy): Promise<Reservation> {
      const left = lockedFor(account);
      if (left > 0) return { kind: 'locked', retryMs: left, reason: 'lock' };
      let r: Reservation;
      try {
        r = await primary.reserve(account, policy);
      } catch (err) {
        fellBack(err);
        r = await fallback.reserve(account, policy); // its slot is settled in memory, Redis back or not
        return r.kind === 'slot' ? { kind: 'slot', slot: fallbackSlot(r.slot, account) } : r;
      }
      if (r.kind === 'slot') return { kind: 'slot', slot: primarySlot(r.slot, account, policy) };
      if (r.reason === 'lock') remember(account, r.retryMs); // set by another process: held here through an outage
      return r;
    },
    async close() {
      clearInterval(sweep);
      locks.clear();
      await Promise.allSettled([primary.close(), fallback.close()]);
    },
  };
}
