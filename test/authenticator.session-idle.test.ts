import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuthenticator, createLastSeen } from '../src/authenticator/authenticator.js';
import type { ActiveSession } from '../src/authenticator/session.store.js';
import { createSessionCache } from '../src/authenticator/session-cache.js';
import {
  createTestApp,
  createTestDatabase,
  registerUser,
  type TestApp,
  type TestDatabase,
  testConfig,
} from './helpers/test-app.js';

// One database for the file (each app below gets its own config on it): fewer embedded databases to start.
let shared: TestDatabase;
beforeAll(async () => {
  shared = await createTestDatabase();
});
afterAll(() => shared?.drop());

describe('session idle timeout (auth.session.idle_timeout)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      // No session cache: these tests move last_used_at in the database and expect the next request to see it.
      config: { auth: { session: { idle_timeout: 3600 }, session_cache: { ttl: 0 } } },
    });
  });
  afterAll(() => t?.close());
  afterEach(() => vi.useRealTimers());

  const session = (token: string) =>
    t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  const sessionIdOf = async (token: string) => (await session(token)).json().session.id as string;
  const setLastUsed = async (id: string, ago: string) => {
    await t.app.sessions.flushUses(); // uses already made are written (behind) first; then the clock moves back
    await t.db.query(`UPDATE sessions SET last_used_at = now() - $2::interval WHERE id = $1`, [id, ago]);
  };
  /**
   * Two hours pass: for the row (last_used_at, which other processes read) and for this process, which remembers the
   * uses it saw (its clock moves on: only Date is faked).
   */
  const idleTwoHours = async (id: string) => {
    await setLastUsed(id, '2 hours');
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 2 * 3600_000 });
  };
  const secondsSinceUse = async (id: string) =>
    Number(
      (
        await t.db.query<{ s: string }>(
          'SELECT extract(epoch FROM now() - last_used_at)::int AS s FROM sessions WHERE id = $1',
          [id],
        )
      ).rows[0]?.s,
    );

  it("an idle session is no session on Better Auth's routes either, whatever the credential", async () => {
    const user = await registerUser(t.app);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
      payload: JSON.stringify({ email: user.email, password: user.password }),
    });
    const cookie = ([] as string[])
      .concat(signIn.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .filter((c) => c.startsWith('better-auth.'))
      .join('; ');
    const raw = signIn.json().token as string;
    const getSession = (headers: Record<string, string>) => t.app.inject({ url: '/api/auth/get-session', headers });
    const credentials: Array<Record<string, string>> = [{ cookie }, { authorization: `Bearer ${raw}` }];
    for (const headers of credentials) {
      expect((await getSession(headers)).json()).toMatchObject({ user: { id: user.userId } });
    }
    const { rows } = await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE token = $1', [raw]);
    await idleTwoHours(rows[0]?.id as string);
    for (const headers of credentials) {
      const res = await getSession(headers);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toBeNull();
    }
  });

  it('refuses a session unused for longer than the idle timeout, on /auth/* and /api/auth/*', async () => {
    const user = await registerUser(t.app);
    const id = await sessionIdOf(user.token);
    await idleTwoHours(id);
    const res = await session(user.token);
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_TOKEN');
    const api = await t.app.inject({
      url: '/api/auth/get-session',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(api.statusCode).toBe(401);
    // A refused use is not recorded: the session stays idle.
    await t.app.sessions.flushUses();
    expect(await secondsSinceUse(id)).toBeGreaterThanOrEqual(7199);
    expect((await session(user.token)).statusCode).toBe(401);
  });

  it('records use at most once a minute', async () => {
    const user = await registerUser(t.app);
    const id = await sessionIdOf(user.token);
    await setLastUsed(id, '5 minutes');
    expect((await session(user.token)).statusCode).toBe(200);
    await t.app.sessions.flushUses(); // uses are written behind, about once a second
    expect(await secondsSinceUse(id)).toBeLessThan(60);
    await setLastUsed(id, '30 seconds');
    expect((await session(user.token)).statusCode).toBe(200);
    await t.app.sessions.flushUses();
    expect(await secondsSinceUse(id)).toBeGreaterThanOrEqual(29); // not rewritten within the minute
  });
});

describe('idle timeout off (0, the default)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ shared });
  });
  afterAll(() => t?.close());

  it('keeps a long-unused session until it expires', async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE sessions SET last_used_at = now() - interval '6 days' WHERE user_id = $1`, [user.userId]);
    const res = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${user.token}` } });
    expect(res.statusCode).toBe(200);
  });
});

// Regression: idleness was measured from the last use written (at most once a minute), so a session used every 35 s
// was refused under a 60 s idle timeout, and one used 1,799 s ago under 1,800 s.
describe('idle timeout counts every use, not only the uses written', () => {
  afterEach(() => vi.useRealTimers());

  /** An Authenticator on one cached session, with a fake clock; `writes` records each use handed to the store. */
  const build = (idleTimeout: number) => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-11-26T12:00:00Z') });
    const writes: Array<{ at: number; minIntervalSeconds: number }> = [];
    const row: ActiveSession = {
      id: 'sess_1',
      userId: 'u1',
      expiresAt: new Date(Date.now() + 7 * 86400_000),
      email: 'a@example.com',
      name: 'A',
      license: null,
      lastUsedAt: new Date(), // signed in just now, not used yet
      ipAllowlist: null,
      lastChannel: null,
    };
    const auth = createAuthenticator({
      tokens: { sign: () => 't', verify: () => ({ sub: 'u1', sid: 'sess_1', iat: 0, exp: 4e9 }) },
      sessions: {
        findActive: async () => ({ ...row }),
        touch: (_id: string, minIntervalSeconds: number) => writes.push({ at: Date.now(), minIntervalSeconds }),
      } as never,
      licenses: (() => ({ type: 'free', features: {}, resourceLimits: {} })) as never,
      cookieSession: async () => null,
      session: { expiresIn: 7 * 86400, updateAge: 86400, idleTimeout },
      cache: createSessionCache({ maxEntries: 100, ttlMs: 3600_000, enabled: true }),
    });
    const start = Date.now();
    /** Uses the session `seconds` after the previous use; whether it was accepted. */
    const useAfter = async (seconds: number) => {
      vi.setSystemTime(Date.now() + seconds * 1000);
      return (await auth.authenticateToken('x')) !== null;
    };
    const writtenAt = () => writes.map((w) => (w.at - start) / 1000);
    return { useAfter, writes, writtenAt };
  };

  it('idle_timeout 60: a session used every 35 s stays signed in', async () => {
    const { useAfter } = build(60);
    const accepted: boolean[] = [];
    for (let i = 0; i < 6; i++) accepted.push(await useAfter(i === 0 ? 0 : 35));
    expect(accepted).toEqual([true, true, true, true, true, true]);
  });

  it('idle_timeout 1800: used at 0 s and 59 s, it is accepted 1,799 s later and refused 1,801 s later', async () => {
    const { useAfter } = build(1800);
    expect(await useAfter(0)).toBe(true);
    expect(await useAfter(59)).toBe(true);
    expect(await useAfter(1799)).toBe(true);
    expect(await useAfter(1801)).toBe(false);
  });

  it('writes a use at most once per min(60 s, idle_timeout / 4) (other processes read that)', async () => {
    for (const [idleTimeout, interval] of [
      [60, 15],
      [1800, 60],
      [0, 60],
    ] as const) {
      const { useAfter, writes, writtenAt } = build(idleTimeout);
      for (let t = 0; t <= 120; t += 5) expect(await useAfter(t === 0 ? 0 : 5)).toBe(true);
      expect(writtenAt()).toEqual(Array.from({ length: 120 / interval + 1 }, (_, i) => i * interval));
      expect(writes.every((w) => w.minIntervalSeconds === interval)).toBe(true);
    }
  });
});

/**
 * An Authenticator on one session row (fake clock from 2026-11-26T12:00:00Z), with its cache; `touch` writes the row
 * as the store does. Counts the row's reads.
 */
function oneSessionAuthenticator(idleTimeout: number, cache: { maxEntries: number; ttlMs: number }) {
  vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-11-26T12:00:00Z') });
  const row: ActiveSession = {
    id: 'sess_1',
    userId: 'u1',
    expiresAt: new Date(Date.now() + 7 * 86400_000),
    email: 'a@example.com',
    name: 'A',
    license: null,
    lastUsedAt: new Date(),
    ipAllowlist: null,
    lastChannel: 'rest',
  };
  let reads = 0;
  const auth = createAuthenticator({
    tokens: { sign: () => 't', verify: () => ({ sub: 'u1', sid: 'sess_1', iat: 0, exp: 4e9 }) },
    sessions: {
      findActive: async () => {
        reads++;
        return { ...row };
      },
      touch: () => {
        row.lastUsedAt = new Date();
      },
    } as never,
    licenses: (() => ({ type: 'free', features: {}, resourceLimits: {} })) as never,
    cookieSession: async () => null,
    session: { expiresIn: 7 * 86400, updateAge: 86400, idleTimeout },
    cache: createSessionCache({ ...cache, enabled: true }),
  });
  return { auth, row, reads: () => reads };
}

// Regression: a cached session was refused as idle by this process's own last use, although other processes used it
// meanwhile (their uses reach only the database): with session_cache.ttl above idle_timeout, a session in constant
// use through gateway A was refused (401) by gateway B.
describe('idle timeout on a cached session used through other processes', () => {
  afterEach(() => vi.useRealTimers());

  /** This process's Authenticator on a session row that other processes' uses move. */
  const build = (idleTimeout: number) => {
    const { auth, row, reads } = oneSessionAuthenticator(idleTimeout, { maxEntries: 100, ttlMs: 3600_000 });
    const advance = (seconds: number) => vi.setSystemTime(Date.now() + seconds * 1000);
    /** Another process's use, as its touch writes it. */
    const usedElsewhere = () => {
      row.lastUsedAt = new Date();
    };
    const accepted = async () => (await auth.authenticateToken('x')) !== null;
    return { advance, usedElsewhere, accepted, reads };
  };

  it('idle_timeout 1800, cache ttl 3600: used elsewhere every 60 s, it is accepted here after 2,000 s', async () => {
    const { advance, usedElsewhere, accepted, reads } = build(1800);
    expect(await accepted()).toBe(true); // cached here
    for (let t = 0; t < 2000; t += 60) {
      advance(60);
      usedElsewhere();
    }
    expect(await accepted()).toBe(true);
    expect(reads()).toBe(2); // the entry looked idle: read again once, then cached again
    advance(10);
    expect(await accepted()).toBe(true);
    expect(reads()).toBe(2); // a cache hit that does not look idle reads nothing
  });

  it('a session idle everywhere is still refused, and stays refused', async () => {
    const { advance, accepted, reads } = build(1800);
    expect(await accepted()).toBe(true);
    advance(1801);
    expect(await accepted()).toBe(false);
    expect(reads()).toBe(2);
    advance(1);
    expect(await accepted()).toBe(false); // the refused use was not recorded
  });
});

// Regression: this process's last use lived only on the cached session object, which lives at most
// session_cache.ttl (30 s shipped; one request with the cache off); a read from the database brings back only the
// throttled last_used_at, so a session was refused up to a write interval early by the very process that saw the use
// (shipped cache, idle_timeout 40: used at 0 s and 9 s, refused at 44 s).
describe('idle timeout counts from the last use this process saw, across reads of the session', () => {
  afterEach(() => vi.useRealTimers());
  /** The shipped config.yaml's session cache. */
  const shipped = testConfig(mkdtempSync(join(tmpdir(), 'idle-last-use-'))).auth.session_cache;

  /** The only process's Authenticator on its session row. */
  const build = (idleTimeout: number, cacheTtlSeconds: number) => {
    const { auth, row, reads } = oneSessionAuthenticator(idleTimeout, {
      maxEntries: shipped.max_entries,
      ttlMs: cacheTtlSeconds * 1000,
    });
    const start = Date.now();
    /** Uses the session at `seconds` after the first use; whether it was accepted. */
    const useAt = async (seconds: number) => {
      vi.setSystemTime(start + seconds * 1000);
      return (await auth.authenticateToken('x')) !== null;
    };
    return { useAt, reads, writtenAt: () => (row.lastUsedAt.getTime() - start) / 1000 };
  };

  it(`shipped cache (ttl ${shipped.ttl} s), idle_timeout ttl + 10: a reload keeps the use not written`, async () => {
    expect(shipped.ttl).toBeGreaterThan(0);
    const idleTimeout = shipped.ttl + 10; // 40 s: a use is written at most every 10 s
    const unwritten = Math.floor(idleTimeout / 4) - 1; // 9 s: within the write interval of the first use
    const { useAt, reads, writtenAt } = build(idleTimeout, shipped.ttl);
    expect(await useAt(0)).toBe(true);
    expect(await useAt(unwritten)).toBe(true);
    expect(writtenAt()).toBe(0); // the row knows only the first use
    const later = unwritten + idleTimeout - 5; // 44 s: 35 s after the last use, past the cache ttl
    expect(later).toBeGreaterThan(shipped.ttl);
    expect(await useAt(later)).toBe(true); // was false: read again, the session counted from 0 s
    expect(reads()).toBe(2);
    expect(await useAt(later + idleTimeout + 1)).toBe(false); // idle by every count: refused
  });

  it('cache off (ttl 0), idle_timeout 20: used at 0 s and 4 s, accepted at 21 s, refused at 42 s', async () => {
    const { useAt, reads } = build(20, 0);
    expect(await useAt(0)).toBe(true);
    expect(await useAt(4)).toBe(true); // not written (every 5 s)
    expect(await useAt(21)).toBe(true); // was false: 21 s after the use written
    expect(reads()).toBe(3); // every check reads the row
    expect(await useAt(42)).toBe(false);
    expect(await useAt(43)).toBe(false); // the refused use was not recorded
  });

  it('remembers a bounded number of sessions: older than the idle timeout first, then the read longest ago', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-11-26T12:00:00Z') });
    const lastSeen = createLastSeen(60_000, 2000);
    const read = (id: string) =>
      lastSeen.attach({ id, lastUsedAt: new Date() } as ActiveSession, Date.now()).lastSeen as { ms: number };
    for (let i = 0; i < 1000; i++) read(`old_${i}`);
    vi.setSystemTime(Date.now() + 61_000);
    let most = 0;
    for (let i = 0; i < 10_000; i++) {
      read(`new_${i}`).ms = Date.now(); // a use through the cache: the shared record
      most = Math.max(most, lastSeen.size);
    }
    expect(most).toBeLessThanOrEqual(2000);
    expect(read('new_9999').ms).toBe(Date.now()); // a recent session keeps its record across reads
  });
});
