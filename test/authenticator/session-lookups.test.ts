import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLookupBatcher } from '../../src/authenticator/lookup-batcher.js';
import { createSessionStore } from '../../src/authenticator/session.store.js';
import type { Queryable } from '../../src/db/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

/** A loadMany that records each batch and answers when the test says so. */
function heldLoads() {
  const batches: string[][] = [];
  const pending: Array<(err?: Error) => void> = [];
  const loadMany = async (keys: readonly string[]) => {
    batches.push([...keys]);
    await new Promise<void>((resolve, reject) => pending.push((err) => (err ? reject(err) : resolve())));
    return keys.filter((k) => !k.startsWith('missing')).map((id) => ({ id, value: `v-${id}` }));
  };
  const answer = async (err?: Error) => {
    while (pending.length === 0) await new Promise((r) => setImmediate(r));
    pending.shift()?.(err);
  };
  return { loadMany, batches, answer };
}

describe('lookup batcher', () => {
  it('idle: a lookup goes out on its own, at once', async () => {
    const { loadMany, batches, answer } = heldLoads();
    const find = createLookupBatcher(loadMany, (v) => v.id, { maxInFlight: 1, maxBatch: 100, stallMs: 60_000 });
    const a = find('a');
    await answer();
    expect(await a).toEqual({ id: 'a', value: 'v-a' });
    expect(batches).toEqual([['a']]);
  });

  it('lookups made while a query runs go together in the next one, each getting its own answer', async () => {
    const { loadMany, batches, answer } = heldLoads();
    const find = createLookupBatcher(loadMany, (v) => v.id, { maxInFlight: 1, maxBatch: 100, stallMs: 60_000 });
    const first = find('a');
    await new Promise((r) => setImmediate(r)); // 'a' is in flight
    const rest = [find('b'), find('missing-1'), find('c'), find('b')];
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([['a']]); // the others wait for it
    await answer();
    await answer();
    expect(await first).toMatchObject({ id: 'a' });
    expect(await Promise.all(rest)).toEqual([
      { id: 'b', value: 'v-b' },
      null,
      { id: 'c', value: 'v-c' },
      { id: 'b', value: 'v-b' },
    ]);
    expect(batches).toEqual([['a'], ['b', 'missing-1', 'c', 'b']]);
  });

  it('at most maxBatch keys per query, and at most maxInFlight queries at once', async () => {
    const { loadMany, batches, answer } = heldLoads();
    const find = createLookupBatcher(loadMany, (v) => v.id, { maxInFlight: 2, maxBatch: 3, stallMs: 60_000 });
    const all = Array.from({ length: 8 }, (_, i) => find(`k${i}`));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([
      ['k0', 'k1', 'k2'],
      ['k3', 'k4', 'k5'],
    ]);
    for (let i = 0; i < 3; i++) await answer();
    expect((await Promise.all(all)).map((v) => v?.id)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']);
    expect(batches[2]).toEqual(['k6', 'k7']);
  });

  it('a query that stalls past stallMs lets the next batch go beside it; each still gets its own answer', async () => {
    const { loadMany, batches, answer } = heldLoads();
    const find = createLookupBatcher(loadMany, (v) => v.id, { maxInFlight: 1, maxBatch: 100, stallMs: 30 });
    const stuck = find('a');
    await new Promise((r) => setImmediate(r));
    const next = [find('b'), find('c')];
    await new Promise((r) => setTimeout(r, 10));
    expect(batches).toEqual([['a']]); // still within stallMs: b and c wait
    await new Promise((r) => setTimeout(r, 60));
    await new Promise((r) => setImmediate(r)); // the stall's hand-over runs in a check phase
    expect(batches).toEqual([['a'], ['b', 'c']]); // 'a' stalled: they went beside it
    await answer(); // 'a' answers at last
    await answer();
    expect(await stuck).toMatchObject({ id: 'a' });
    expect((await Promise.all(next)).map((v) => v?.id)).toEqual(['b', 'c']);
    // Both places are free again: a new lookup goes out at once.
    const later = find('d');
    await new Promise((r) => setImmediate(r));
    expect(batches).toHaveLength(3);
    await answer();
    expect(await later).toMatchObject({ id: 'd' });
  });

  it('a failed query rejects the lookups in it, and the next lookups still run', async () => {
    const { loadMany, answer } = heldLoads();
    const find = createLookupBatcher(loadMany, (v) => v.id, { maxInFlight: 1, maxBatch: 100, stallMs: 60_000 });
    const failed = [find('a'), find('b')];
    await answer(new Error('connection terminated'));
    for (const f of failed) await expect(f).rejects.toThrow('connection terminated');
    const next = find('c');
    await answer();
    expect(await next).toMatchObject({ id: 'c' });
  });
});

describe('session store: concurrent lookups on the database', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('each lookup gets its own session; gone, expired and disabled ones are null; fewer queries than lookups', async () => {
    const users = await Promise.all([registerUser(t.app), registerUser(t.app), registerUser(t.app)]);
    const [active, expired, disabled] = users.map((u) => u.userId) as [string, string, string];
    const ids: Array<{ id: string; want: string | null }> = [];
    for (let i = 0; i < 20; i++) {
      const userId = [active, expired, disabled][i % 3] as string;
      const id = `sess_lookup_${i}_${Date.now()}`;
      const expiresAt = userId === expired ? "now() - interval '1 second'" : "now() + interval '1 hour'";
      await t.db.query(`INSERT INTO sessions (id, token, user_id, expires_at) VALUES ($1, $1, $2, ${expiresAt})`, [
        id,
        userId,
      ]);
      ids.push({ id, want: userId === active ? userId : null });
    }
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [disabled]);

    let queries = 0;
    const counting: Queryable = {
      query: ((sql: string, params?: readonly unknown[]) => {
        queries++;
        return t.db.query(sql, params);
      }) as Queryable['query'],
    };
    const store = createSessionStore(counting);
    const lookups = [...ids, { id: 'sess_never_existed', want: null }];
    const found = await Promise.all(lookups.map(({ id }) => store.findActive(id)));
    expect(found.map((s) => s?.userId ?? null)).toEqual(lookups.map((l) => l.want));
    for (const [i, s] of found.entries()) if (s) expect(s.id).toBe(lookups[i]?.id);
    expect(queries).toBeLessThan(lookups.length);
    await store.close();
  });
});
