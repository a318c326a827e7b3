import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { betterAuthCookie, createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: with a path in server.base_url (a prefix the proxy strips before the gateway), Better Auth took the
// path as its routes' prefix in place of /api/auth, and every /api/auth/* route answered 404.
describe('server.base_url with a path prefix', () => {
  const BASE = 'http://localhost:3000/gw';
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        server: { base_url: BASE },
        oauth: { github: { client_id: 'Iv1.github-client-id', client_secret: 'github-secret' } },
      },
    });
  });
  afterAll(() => t?.close());

  it("Better Auth's routes answer at /api/auth/* as the proxy hands them over", async () => {
    const user = await registerUser(t.app);
    const cookie = await betterAuthCookie(t.app, user, 'http://localhost:3000');
    const session = await t.app.inject({ url: '/api/auth/get-session', headers: { cookie } });
    expect(session.json().user.email).toBe(user.email);
  });

  it('the OAuth redirect_uri carries the prefix, as the provider must call it back through the proxy', async () => {
    const res = await t.app.inject({ url: '/auth/oauth/github' });
    expect(res.statusCode).toBe(302);
    const url = new URL(res.headers.location as string);
    expect(url.searchParams.get('redirect_uri')).toBe(`${BASE}/api/auth/callback/github`);
  });
});
