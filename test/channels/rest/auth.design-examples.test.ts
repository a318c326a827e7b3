import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../../helpers/test-app.js';

// The design's curl examples, verbatim, and their response shapes.
describe('design examples', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const user = { email: 'user@example.com', password: 'SecurePassword123!', name: 'John Doe' };
  let token = '';

  it('registers and signs in: {success, userId: user_<ms>_<random>, token: eyJ...}', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/auth/register', payload: user });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(Object.keys(body).sort()).toEqual(['success', 'token', 'userId']);
    expect(body.success).toBe(true);
    expect(body.userId).toMatch(/^user_\d{13}_[0-9a-z]+$/);
    expect(body.token).toMatch(/^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
    token = body.token;
  });

  it('logs in with the same shape', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(Object.keys(body).sort()).toEqual(['success', 'token', 'userId']);
    expect(body.token).not.toBe(token); // a new session, a new token
  });

  it('GET /auth/session with the bearer token', async () => {
    const res = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      success: true,
      user: { email: user.email, name: user.name },
      license: { type: 'free' },
    });
  });

  it('GET /auth/health', async () => {
    const res = await t.app.inject({ url: '/auth/health' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ success: true, status: 'ok', database: { reachable: true } });
  });

  it('logout ends the session: the same token gets 401 at once', async () => {
    const out = await t.app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(out.statusCode).toBe(200);
    expect(out.json()).toEqual({ success: true });
    const res = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_TOKEN');
  });
});
