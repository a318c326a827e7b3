import { describe, expect, it } from 'vitest';
import { createSessionStore } from '../../src/authenticator/session.store.js';
import type { Queryable } from '../../src/db/index.js';

/**
 * The write-behind of session uses, against a database stand-in that records each UPDATE and answers when the test
 * says so. (The UPDATE itself runs on PostgreSQL and PGlite in the authenticator, idle-timeout and sessions tests.)
 */
function recordingDb() {
  const writes: Array<{ ids: string[]; channels: string[] }> = [];
  const pending: Array<(err?: Error) => void> = [];
  const db: Queryable = {
    query: (async (_sql: string, params?: readonly unknown[]) => {
      const [ids, channels] = params as [string[], string[]];
      writes.push({ ids, channels });
      await new Promise<void>((resolve, reject) => pending.push((err) => (err ? reject(err) : resolve())));
      return { rows: [], rowCount: ids.length };
    }) as Queryable['query'],
  };
  const answer = async (err?: Error) => {
    while (pending.length === 0) await new Promise((r) => setImmediate(r));
    pending.shift()?.(err);
  };
  return { db, writes, answer };
}

describe('session uses, written behind', () => {
  it('gathers uses into one UPDATE, one entry per session, ids in order', async () => {
    const { db, writes, answer } = recordingDb();
    const store = createSessionStore(db, { flushMs: 60_000 });
    store.touch('sess_b', 60, 'rest');
    store.touch('sess_a', 60, 'rest');
    store.touch('sess_b', 60, 'websocket');
    const flushed = store.flushUses();
    await answer();
    await flushed;
    expect(writes).toEqual([{ ids: ['sess_a', 'sess_b'], channels: ['rest', 'websocket'] }]);
  });

  it('one write at a time: uses made during a write go together in the next one', async () => {
    const { db, writes, answer } = recordingDb();
    const store = createSessionStore(db, { flushMs: 60_000 });
    store.touch('sess_1', 60, 'rest');
    const first = store.flushUses();
    store.touch('sess_2', 60, 'rest');
    store.touch('sess_3', 60, 'rest');
    const second = store.flushUses(); // waits for the first write, then writes both
    expect(writes).toHaveLength(1);
    await answer();
    await first;
    await answer();
    await second;
    expect(writes.map((w) => w.ids)).toEqual([['sess_1'], ['sess_2', 'sess_3']]);
  });

  it('a failed write is logged without the session ids and does not fail the caller', async () => {
    const { db, answer } = recordingDb();
    const warnings: Array<{ obj: object; msg: string }> = [];
    const store = createSessionStore(db, { flushMs: 60_000, log: { warn: (obj, msg) => warnings.push({ obj, msg }) } });
    store.touch('sess_secretish', 60, 'rest');
    const flushed = store.flushUses();
    await answer(new Error('connection terminated'));
    await expect(flushed).resolves.toBeUndefined();
    expect(warnings).toEqual([
      { obj: { err: { message: 'connection terminated' }, uses: 1 }, msg: 'session uses not recorded' },
    ]);
  });

  it('writes by itself after flushMs, and close() does not wait on a database that never answers', async () => {
    const { db, writes } = recordingDb();
    const store = createSessionStore(db, { flushMs: 20 });
    store.touch('sess_x', 60, 'rest');
    for (let waited = 0; writes.length === 0 && waited < 5000; waited += 10)
      await new Promise((r) => setTimeout(r, 10));
    expect(writes.map((w) => w.ids)).toEqual([['sess_x']]); // by the timer; this write never completes
    store.touch('sess_y', 60, 'rest');
    await store.close(50); // returns although the write in flight never does (a hang would time the test out)
    store.touch('sess_z', 60, 'rest'); // after close: ignored
    await new Promise((r) => setTimeout(r, 60));
    expect(writes.map((w) => w.ids)).toEqual([['sess_x']]);
  });
});
