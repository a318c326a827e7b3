import type { AttemptSlot, CounterStore, LockoutPolicy, Reservation } from './store.js';

/**
 * Redis first; when a Redis command fails (down, timeout), the same operation runs on this process's memory store.
 *
 * Why neither fail-open nor fail-closed: failing open would switch brute-force protection off exactly when an
 * attacker can cause it (by loading Redis), and failing closed would turn a Redis outage into a login outage. With
 * the local fallback every process still enforces the limits on its own, so an attacker gains at most a factor of
 * the process count while Redis is down, and sign-ins keep working.
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
): CounterStore {
  const fellBack = (err: unknown) => onFallback(err as Error);

  const failLocally = async (account: string, policy: LockoutPolicy): Promise<number | null> => {
    const r = await fallback.reserve(account, policy);
    return r.kind === 'slot' ? r.slot.fail() : null; // refused: this process has it locked or full already
  };

  const primarySlot = (slot: AttemptSlot, account: string, policy: LockoutPolicy): AttemptSlot => ({
    fail: () =>
      slot.fail().catch((err) => {
        fellBack(err);
        return failLocally(account, policy);
      }),
    succeed: () => slot.succeed().catch(fellBack),
    release: () => slot.release().catch(fellBack),
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
      let r: Reservation;
      try {
        r = await primary.reserve(account, policy);
      } catch (err) {
        fellBack(err);
        return fallback.reserve(account, policy); // its slot is settled in memory, Redis back or not
      }
      return r.kind === 'slot' ? { kind: 'slot', slot: primarySlot(r.slot, account, policy) } : r;
    },
    async close() {
      await Promise.allSettled([primary.close(), fallback.close()]);
    },
  };
}
