import DataLoader from 'dataloader';

export interface LookupBatcherOptions {
  /** Batch queries running at once; lookups made meanwhile wait and go together in the next one. */
  maxInFlight: number;
  /** Keys in one query at most. */
  maxBatch: number;
}

/**
 * Lookups by key, coalesced while the database is busy: with fewer than `maxInFlight` batch queries running, a lookup
 * goes out in the next turn of the event loop (with whatever else arrived in the same turn); otherwise it joins the
 * batch that goes out as soon as a running one returns. Idle, that is one query per lookup, as before; under load the
 * batches grow with the wait, so the database sees one query (one write, one wake-up, one execution) per batch
 * instead of per lookup.
 *
 * `loadMany` returns what it found, in any order, keyed by `keyOf`; a key it did not return resolves to null. A failed
 * batch rejects every lookup in it with that error.
 */
export function createLookupBatcher<V>(
  loadMany: (keys: readonly string[]) => Promise<readonly V[]>,
  keyOf: (value: V) => string,
  options: LookupBatcherOptions,
): (key: string) => Promise<V | null> {
  let running = 0;
  const waiting: Array<() => void> = [];
  const loader = new DataLoader<string, V | null>(
    async (keys) => {
      try {
        const found = await loadMany(keys);
        const byKey = new Map<string, V>();
        for (const value of found) byKey.set(keyOf(value), value);
        return keys.map((key) => byKey.get(key) ?? null);
      } finally {
        const next = waiting.shift();
        if (next) setImmediate(next);
        else running--;
      }
    },
    {
      // No memo: each lookup reads the database (the session cache, in front of this, is what remembers).
      cache: false,
      maxBatchSize: options.maxBatch,
      batchScheduleFn: (dispatch) => {
        if (running < options.maxInFlight) {
          running++;
          setImmediate(dispatch);
        } else {
          waiting.push(dispatch);
        }
      },
    },
  );
  return (key) => loader.load(key);
}
