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
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        auth: { argon2: { max_concurrent: 1, max_queue: 0 } },
        rate_limit: { enabled: false },
        lockout: { max_failures: 2 },
      },
    });
  });
  afterAll(() => t?.close());

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
    const results = await Promise.all([rest(), api(), rest(), api(), rest(), api()]);
    const codes = results.map((r) => r.statusCode);
    expect(codes).toContain(200);
    expect(codes).toContain(503);
    expect(codes.every((c) => c === 200 || c === 503)).toBe(true);
    for (const r of results.filter((x) => x.statusCode === 503)) {
      expect(r.json().error.code).toBe('SERVER_BUSY');
      expect(r.headers['retry-after']).toBe('1');
    }
    // Refused hashes were no verdict: the account is not locked (max_failures is 2).
    expect((await rest()).statusCode).toBe(200);
  });
});
