import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

describe('GET /auth/audit', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { lockout: { max_failures: 2 }, rate_limit: { enabled: false } } });
  });
  afterAll(() => t?.close());

  const login = (email: string, password: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': 'audit-test/1.0' },
      payload: { email, password },
    });
  const audit = (token: string, query = '') =>
    t.app.inject({ url: `/auth/audit${query}`, headers: { authorization: `Bearer ${token}` } });

  it("lists the user's own events newest first, a page at a time", async () => {
    const user = await registerUser(t.app);
    const other = await registerUser(t.app);
    expect((await login(other.email, 'wrong')).statusCode).toBe(401);
    expect((await login(user.email, 'wrong-1')).statusCode).toBe(401);
    const ok = await login(user.email, user.password);
    expect(ok.statusCode).toBe(200);
    const token = ok.json().token as string;
    await t.app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${user.token}` } });

    const first = await audit(token, '?limit=2');
    expect(first.statusCode).toBe(200);
    const page1 = first.json();
    expect(page1.events.map((e: { event: string }) => e.event)).toEqual(['logout', 'login.success']);
    expect(page1.events[1]).toMatchObject({
      channel: 'rest',
      userAgent: 'audit-test/1.0',
      details: { method: 'password' },
    });
    expect(page1.events[1].ip).toMatch(/\S/);
    expect(page1.nextCursor).toMatch(/^\d+$/);

    const page2 = (await audit(token, `?limit=2&cursor=${page1.nextCursor}`)).json();
    expect(page2.events.map((e: { event: string }) => e.event)).toEqual(['signup']);
    expect(page2.nextCursor).toBeNull();
    // The failed login named no user id (unknown to the route until verified), so it is not listed as the user's.
    const all = (await audit(token)).json().events as Array<{ event: string; userId?: string }>;
    expect(all.every((e) => e.userId === undefined)).toBe(true);
    expect(all.map((e) => e.event)).toEqual(['logout', 'login.success', 'signup']);
  });

  it('shows a lockout of the account to its owner', async () => {
    const user = await registerUser(t.app);
    await login(user.email, 'wrong-1');
    await login(user.email, 'wrong-2');
    const events = (await audit(user.token)).json().events as Array<{ event: string; details: object }>;
    expect(events[0]).toMatchObject({ event: 'lockout', details: { failures: 2, lockedSeconds: 60 } });
  });

  it('refuses bad paging input and anonymous callers', async () => {
    const user = await registerUser(t.app);
    for (const q of [
      '?limit=0',
      '?limit=101',
      '?limit=abc',
      '?cursor=-1',
      '?cursor=1e5',
      '?cursor=99999999999999999999',
    ]) {
      const res = await audit(user.token, q);
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
    const anon = await t.app.inject({ url: '/auth/audit' });
    expect(anon.statusCode).toBe(401);
    expect(anon.json().error.code).toBe('AUTH_REQUIRED');
  });
});
