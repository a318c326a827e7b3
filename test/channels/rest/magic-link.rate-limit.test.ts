import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../../helpers/test-app.js';

describe('magic link per-address limit', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: { magic_link: { max_per_window: 3, window: 900 }, rate_limit: { enabled: false } },
    });
  });
  afterAll(() => t?.close());

  const newAddress = () => `ml${randomBytes(4).toString('hex')}@example.com`;
  /** Earlier requests of `email`, `ages` seconds old. */
  const requested = async (email: string, ages: number[]) => {
    for (const age of ages) {
      await t.db.query(
        `INSERT INTO magic_link_tokens (token_hash, email, expires_at, created_at)
         VALUES ($1, $2, now() + interval '10 minutes', now() - make_interval(secs => $3))`,
        [randomBytes(16).toString('hex'), email, age],
      );
    }
  };
  const ask = (email: string, ip = '203.0.113.1') =>
    t.app.inject({ method: 'POST', url: '/auth/magic-link', remoteAddress: ip, payload: { email } });
  const retryAfterOf = async (email: string) => {
    const refused = await ask(email);
    expect([refused.statusCode, refused.json().error?.code]).toEqual([429, 'RATE_LIMITED']);
    return Number(refused.headers['retry-after']);
  };

  // Regression: Retry-After was always the whole window, whenever the oldest request left it.
  it('Retry-After is the wait until the oldest counted request leaves the window', async () => {
    const email = newAddress();
    await requested(email, [600, 300, 100]);
    expect(await retryAfterOf(email)).toBeGreaterThanOrEqual(299);
    expect(await retryAfterOf(email)).toBeLessThanOrEqual(300);

    const fresh = newAddress();
    for (let i = 0; i < 3; i++) expect((await ask(fresh)).statusCode).toBe(200);
    const wait = await retryAfterOf(fresh);
    expect(wait).toBeGreaterThanOrEqual(899);
    expect(wait).toBeLessThanOrEqual(900);
  });

  it('over the limit (it was lowered): the wait until enough requests leave to be under it again', async () => {
    const email = newAddress();
    await requested(email, [800, 600, 300, 100]);
    const wait = await retryAfterOf(email);
    expect(wait).toBeGreaterThanOrEqual(299);
    expect(wait).toBeLessThanOrEqual(300);
  });

  it('a slot about to free: Retry-After is at least 1, and the address may ask once it has passed', async () => {
    const email = newAddress();
    await requested(email, [899, 600, 300]);
    expect(await retryAfterOf(email)).toBe(1);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await ask(email)).statusCode).toBe(200);
  });

  // Regression: every refused request wrote a rate_limit.hit row (a write per request at the client's rate).
  it('a refusal is audited once per client, address and window', async () => {
    const hits = async (ip: string) =>
      (
        await t.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM auth_audit_log WHERE event = 'rate_limit.hit' AND ip_address = $1`,
          [ip],
        )
      ).rows[0]?.n;
    const [a, b] = [newAddress(), newAddress()];
    await requested(a, [300, 200, 100]);
    await requested(b, [300, 200, 100]);
    for (let i = 0; i < 5; i++) expect((await ask(a, '203.0.113.21')).statusCode).toBe(429);
    expect(await hits('203.0.113.21')).toBe(1);
    expect((await ask(b, '203.0.113.21')).statusCode).toBe(429); // another address: its own row
    expect(await hits('203.0.113.21')).toBe(2);
    expect((await ask(a, '203.0.113.22')).statusCode).toBe(429); // another client: its own row
    expect(await hits('203.0.113.22')).toBe(1);
  });
});
