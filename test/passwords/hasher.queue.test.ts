import argon2 from 'argon2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter } from '../../src/passwords/hasher.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

describe('bounded hash queue', () => {
  it('runs max at once, queues maxQueue, refuses the rest with SERVER_BUSY', async () => {
    const limit = createLimiter(1, 1);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const first = limit(() => gate.then(() => 'first'));
    const second = limit(async () => 'second');
    await expect(limit(async () => 'third')).rejects.toMatchObject({ code: 'SERVER_BUSY', details: { retryAfter: 1 } });
    release();
    expect(await Promise.all([first, second])).toEqual(['first', 'second']);
    expect(await limit(async () => 'after')).toBe('after');
  });
});

describe('a full hash queue answers 503 SERVER_BUSY, never 500, and is not a wrong password', () => {
  let t: TestApp;
  let slowHash = '';
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        auth: { argon2: { max_concurrent: 1, max_queue: 0 } },
        rate_limit: { enabled: false },
        lockout: { max_failures: 10 },
      },
    });
    slowHash = await argon2.hash('x', { type: argon2.argon2id, memoryCost: 65536, timeCost: 6, parallelism: 1 });
  });
  afterAll(() => t?.close());

  // The one hash slot is held by a deliberately expensive verify while the requests arrive, so every one of them
  // meets a full queue (max_queue 0) whatever the machine's speed.
  const holdingTheHashSlot = async <T>(fn: () => Promise<T>): Promise<T> => {
    const held = t.app.hasher.verify(slowHash, 'x');
    try {
      return await fn();
    } finally {
      await held;
    }
  };

  it('parallel sign-ins on both routes beyond the bound get 503 with Retry-After', async () => {
    const user = await registerUser(t.app);
    const rest = () =>
      t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password: user.password } });
    const api = () =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
        payload: JSON.stringify({ email: user.email, password: user.password }),
      });
    const results = await holdingTheHashSlot(() => Promise.all([rest(), api(), rest(), api()]));
    for (const r of results) {
      expect(r.statusCode).toBe(503);
      expect(r.json().error.code).toBe('SERVER_BUSY');
      expect(r.headers['retry-after']).toBe('1');
    }
    // Shed load is logged as a warning with its code, one short line per request (no error, no stack trace).
    const lines = t.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const shed = lines.filter((l) => l.code === 'SERVER_BUSY');
    expect(shed).toHaveLength(4);
    for (const l of shed) expect(l).toMatchObject({ level: 40, msg: 'request shed', status: 503 });
    expect(lines.filter((l) => Number(l.level) >= 50)).toEqual([]);
    expect((await rest()).statusCode).toBe(200);
    expect((await api()).statusCode).toBe(200);
  });

  it('a refused hash is no verdict: its lockout slot is given back, not counted as a wrong password', async () => {
    const user = await registerUser(t.app);
    const wrong = (i: number) =>
      t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password: `wrong-${i}` } });
    const burst = await holdingTheHashSlot(() => Promise.all([0, 1, 2, 3, 4, 5].map(wrong)));
    expect(burst.map((r) => r.statusCode)).toEqual([503, 503, 503, 503, 503, 503]);
    // max_failures is 10: all 10 wrong guesses are still verified, then the account locks.
    for (let i = 0; i < 10; i++) expect((await wrong(100 + i)).statusCode).toBe(401);
    expect((await wrong(200)).statusCode).toBe(429);
  });
});
