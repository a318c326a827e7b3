import { describe, expect, it } from 'vitest';
import type { ActiveSession } from '../../src/authenticator/session.store.js';
import { createSessionCache } from '../../src/authenticator/session-cache.js';

// The cache's own rules, with a fake clock and a fake loader (no database).
const session = (id: string, expiresAt: number, userId = 'u1'): ActiveSession => ({
  id,
  userId,
  expiresAt: new Date(expiresAt),
  email: 'a@example.com',
  name: 'A',
  license: null,
  lastUsedAt: new Date(),
  ipAllowlist: null,
  lastChannel: null,
});

function setup(options: { maxEntries?: number; ttlMs?: number } = {}) {
  let clock = 1_000_000;
  const rows = new Map<string, ActiveSession>();
  let loads = 0;
  const load = async (id: string) => {
    loads++;
    return rows.get(id) ?? null;
  };
  const cache = createSessionCache({
    maxEntries: options.maxEntries ?? 100,
    ttlMs: options.ttlMs ?? 30_000,
    enabled: true,
    now: () => clock,
  });
  return {
    cache,
    rows,
    load,
    loads: () => loads,
    tick: (ms: number) => {
      clock += ms;
    },
    now: () => clock,
  };
}

describe('session cache', () => {
  it('serves a validated session from memory after the first load', async () => {
    const s = setup();
    s.rows.set('s1', session('s1', s.now() + 60_000));
    await s.cache.lookup('s1', s.load);
    await s.cache.lookup('s1', s.load);
    expect(await s.cache.lookup('s1', s.load)).toMatchObject({ id: 's1' });
    expect(s.loads()).toBe(1);
  });

  it('never serves a session past its expiresAt, whatever the ttl', async () => {
    const s = setup({ ttlMs: 60_000 });
    s.rows.set('s1', session('s1', s.now() + 1_000));
    await s.cache.lookup('s1', s.load);
    s.rows.delete('s1'); // the database no longer returns it once expired
    s.tick(1_000);
    expect(await s.cache.lookup('s1', s.load)).toBeNull();
    expect(s.loads()).toBe(2);
  });

  it('re-reads an entry older than the ttl', async () => {
    const s = setup({ ttlMs: 5_000 });
    s.rows.set('s1', session('s1', s.now() + 60_000));
    await s.cache.lookup('s1', s.load);
    s.tick(5_000);
    await s.cache.lookup('s1', s.load);
    expect(s.loads()).toBe(2);
  });

  it('forget, forgetUser and clear drop entries', async () => {
    const s = setup();
    for (const [id, user] of [
      ['a', 'u1'],
      ['b', 'u1'],
      ['c', 'u2'],
    ] as const) {
      s.rows.set(id, session(id, s.now() + 60_000, user));
      await s.cache.lookup(id, s.load);
    }
    s.cache.forget('a');
    expect(s.cache.size).toBe(2);
    s.cache.forgetUser('u1');
    expect(s.cache.size).toBe(1);
    s.cache.clear();
    expect(s.cache.size).toBe(0);
  });

  it("forgetUser drops exactly that user's entries, after evictions, expiries and forgets", async () => {
    const s = setup({ maxEntries: 50, ttlMs: 10_000 });
    const userOf = (i: number) => `u${i % 7}`;
    for (let i = 0; i < 120; i++) {
      s.rows.set(`s${i}`, session(`s${i}`, s.now() + 60_000, userOf(i)));
      await s.cache.lookup(`s${i}`, s.load); // the first 70 are evicted on the way
      if (i % 11 === 0) s.cache.forget(`s${i}`);
    }
    s.tick(10_000); // all stale now: each lookup below drops its entry and loads it again
    for (let i = 100; i < 120; i++) await s.cache.lookup(`s${i}`, s.load);
    const cachedOf = (user: string) =>
      Array.from({ length: 120 }, (_, i) => `s${i}`).filter((id) => {
        const before = s.loads();
        void s.cache.lookup(id, s.load); // served from memory (no load) only when cached
        const cached = s.loads() === before;
        if (!cached) s.cache.forget(id); // keep this probe from caching it
        return cached && userOf(Number(id.slice(1))) === user;
      });
    expect(cachedOf('u3').length).toBeGreaterThan(0);
    s.cache.forgetUser('u3');
    expect(cachedOf('u3')).toEqual([]);
    expect(cachedOf('u4').length).toBeGreaterThan(0); // other users keep theirs
  });

  it('does not store a row whose load raced an invalidation (the NOTIFY came before the stale row)', async () => {
    const s = setup();
    s.rows.set('s1', session('s1', s.now() + 60_000));
    let release: () => void = () => {};
    const slowLoad = async (id: string) => {
      const row = s.rows.get(id) ?? null; // read before the delete commits
      await new Promise<void>((r) => {
        release = r;
      });
      return row;
    };
    const pending = s.cache.lookup('s1', slowLoad);
    s.rows.delete('s1');
    s.cache.forget('s1'); // the session-end event arrives while the read is in flight
    release();
    expect(await pending).not.toBeNull(); // that one request saw the committed-before state...
    expect(s.cache.size).toBe(0); // ...but it is not remembered
    expect(await s.cache.lookup('s1', s.load)).toBeNull();
  });

  it("another session's end during a load does not void it; a user change or a flush does", async () => {
    const s = setup();
    s.rows.set('s1', session('s1', s.now() + 60_000, 'u1'));
    const held = () => {
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const load = async (id: string) => {
        const row = s.rows.get(id) ?? null;
        await gate;
        return row;
      };
      return { load, release: () => release() };
    };

    const a = held();
    const first = s.cache.lookup('s1', a.load);
    s.cache.forget('s-other'); // someone else signs out meanwhile
    a.release();
    await first;
    expect(s.cache.size).toBe(1); // kept: a logout elsewhere says nothing about s1

    for (const invalidate of [() => s.cache.forgetUser('u9'), () => s.cache.clear()]) {
      s.cache.clear();
      const b = held();
      const pending = s.cache.lookup('s1', b.load);
      invalidate(); // may concern any session: the load in flight is not stored
      b.release();
      expect(await pending).toMatchObject({ id: 's1' });
      expect(s.cache.size).toBe(0);
    }
  });

  it('disabled (listener down): empty, bypassed, stores nothing; enabled again it caches again', async () => {
    const s = setup();
    s.rows.set('s1', session('s1', s.now() + 60_000));
    await s.cache.lookup('s1', s.load);
    s.cache.setEnabled(false);
    expect(s.cache.size).toBe(0);
    await s.cache.lookup('s1', s.load);
    await s.cache.lookup('s1', s.load);
    expect(s.loads()).toBe(3);
    expect(s.cache.size).toBe(0);
    s.cache.setEnabled(true);
    await s.cache.lookup('s1', s.load);
    await s.cache.lookup('s1', s.load);
    expect(s.loads()).toBe(4);
  });

  it('holds at most maxEntries, dropping the least recently used', async () => {
    const s = setup({ maxEntries: 2 });
    for (const id of ['a', 'b', 'c']) s.rows.set(id, session(id, s.now() + 60_000));
    await s.cache.lookup('a', s.load);
    await s.cache.lookup('b', s.load);
    await s.cache.lookup('a', s.load); // a is now the most recent
    await s.cache.lookup('c', s.load); // evicts b
    expect(s.cache.size).toBe(2);
    const before = s.loads();
    await s.cache.lookup('a', s.load);
    expect(s.loads()).toBe(before);
    await s.cache.lookup('b', s.load);
    expect(s.loads()).toBe(before + 1);
  });

  it('does not cache a missing session (a revoked token is re-checked every time)', async () => {
    const s = setup();
    expect(await s.cache.lookup('nope', s.load)).toBeNull();
    expect(await s.cache.lookup('nope', s.load)).toBeNull();
    expect(s.loads()).toBe(2);
  });

  it('ttl 0 or maxEntries 0 disables it entirely', async () => {
    for (const options of [{ ttlMs: 0 }, { maxEntries: 0 }]) {
      const s = setup(options);
      s.rows.set('s1', session('s1', s.now() + 60_000));
      await s.cache.lookup('s1', s.load);
      await s.cache.lookup('s1', s.load);
      expect(s.loads()).toBe(2);
      expect(s.cache.enabled).toBe(false);
    }
  });

  // The session-cache plugin lets a state-changing answer skip waiting for the session events only when the cache is
  // idle: a load in flight would store what a change committed meanwhile has ended, unless its event arrived first.
  it('is idle only with nothing cached and nothing being loaded', async () => {
    const { cache, rows, now } = setup();
    rows.set('s1', session('s1', now() + 60_000));
    expect(cache.idle).toBe(true);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const pending = cache.lookup('s1', async (id) => {
      await gate;
      return rows.get(id) ?? null;
    });
    expect(cache.size).toBe(0);
    expect(cache.idle).toBe(false);
    release();
    await pending;
    expect(cache.size).toBe(1);
    expect(cache.idle).toBe(false);
    cache.forget('s1');
    expect(cache.idle).toBe(true);
    // A load that finds nothing leaves the cache idle again.
    await cache.lookup('none', async () => null);
    expect(cache.idle).toBe(true);
  });
});
