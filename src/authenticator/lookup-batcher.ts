import DataLoader from 'dataloader';

export interface LookupBatcherOptions {
  /** Batch queries running at once; lookups made meanwhile wait and go together in the next one. */
  maxInFlight: number;
  /** Keys in one query at most. */
  maxBatch: number;
  /**
   * A batch query still running after this many ms no longer holds its place: the next batch goes out beside it. A
   * stuck query (a dead connection, a lock) then delays the other lookups by this much once, not until it times out.
   */
  stallMs: number;
}

/**
 * Lookups by key, coalesced while the database is busy: with fewer than `maxInFlight` batch queries running, a lookup
 * goes out in the next turn of the event loop (with whatever else arrived in the same turn); otherwise it joins the
 * batch that goes out as soon as a running one returns (or stalls). Idle, that is one query per lookup, as before;
 * under load the batches grow with the wait, so the database sees one query (one write, one wake-up, one execution)
 * per batch instead of per lookup.
 *
 * `loadMany` returns what it found, in any order, keyed by `keyOf`; a key it did not return resolves to null. A failed
 * batch rejects every lookup in it with that error.
 */
export function createLookupBatcher<V>(
  loadMany: (keys: readonly string[]) => Promise<readonly V[]>,
  keyOf: (value: V) => string,
  options: LookupBatcherOptions,
): (key: string) => Promise<V | null> {
  /** Places taken by batches sent (or about to be). */
  let running = 0;
  const waiting: Array<() => void> = [];
  /** Set by the batch function: DataLoader does not call it for a batch without keys. */
  let invoked = false;

  /** A batch is done (or stalled): the next waiting batch takes its place, or the place is free. */
  const release = () => {
    const next = waiting.shift();
    if (next) setImmediate(() => send(next));
    else running--;
  };
  const send = (dispatch: () => void) => {
    invoked = false;
    dispatch();
    if (!invoked) release();
  };

  const loader = new DataLoader<string, V | null>(
    async (keys) => {
      invoked = true;
      let released = false;
      const releaseOnce = () => {
        if (released) return;
        released = true;
        release();
      };
      const stall = setTimeout(releaseOnce, options.stallMs);
      try {
        const found = await loadMany(keys);
        const byKey = new Map<string, V>();
        for (const value of found) byKey.set(keyOf(value), value);
        return keys.map((key) => byKey.get(key) ?? null);
      } finally {
        clearTimeout(stall);
        releaseOnce();
      }
    },
    {
      // No memo: each lookup reads the database (the session cache, in front of this, is what remembers).
      cache: false,
      maxBatchSize: options.maxBatch,
      batchScheduleFn: (dispatch) => {
        if (running < options.maxInFlight) {
          running++;
          setImmediate(() => send(dispatch));
        } else {
          waiting.push(dispatch);
        }
      },
    },
  );
  return (key) => loader.load(key);
}
