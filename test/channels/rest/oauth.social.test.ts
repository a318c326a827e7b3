import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// Google and GitHub cannot be reached from here: these tests stop at the authorize redirect the gateway builds.
const BASE = 'http://localhost:3000';

describe('Google and GitHub providers', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        oauth: {
          redirect_url: 'http://localhost:5173/signed-in',
          google: { client_id: 'google-client-id.apps.googleusercontent.com', client_secret: 'google-secret' },
          github: { client_id: 'Iv1.github-client-id', client_secret: 'github-secret' },
        },
      },
    });
  });
  afterAll(() => t?.close());

  it('GET /auth/oauth/providers lists both, with their start URLs', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/oauth/providers' });
    expect(res.statusCode).toBe(200);
    expect(res.json().providers).toEqual([
      { id: 'google', name: 'Google', kind: 'social', authorizeUrl: `${BASE}/auth/oauth/google` },
      { id: 'github', name: 'GitHub', kind: 'social', authorizeUrl: `${BASE}/auth/oauth/github` },
    ]);
    expect(res.body).not.toContain('secret');
  });

  it.each([
    ['google', 'https://accounts.google.com', 'google-client-id.apps.googleusercontent.com'],
    ['github', 'https://github.com', 'Iv1.github-client-id'],
  ])(
    'GET /auth/oauth/%s redirects to the provider with our client_id, redirect_uri and state',
    async (id, origin, clientId) => {
      const res = await t.app.inject({ method: 'GET', url: `/auth/oauth/${id}` });
      expect(res.statusCode).toBe(302);
      const url = new URL(res.headers.location as string);
      expect(url.origin).toBe(origin);
      expect(url.searchParams.get('client_id')).toBe(clientId);
      expect(url.searchParams.get('redirect_uri')).toBe(`${BASE}/api/auth/callback/${id}`);
      expect(url.searchParams.get('state')).toBeTruthy();
      expect(res.headers.location).not.toContain('secret');
      // Better Auth's state cookie goes to the browser with the redirect.
      expect((res.headers['set-cookie'] as string[]).some((c) => /state/.test(c))).toBe(true);
    },
  );

  it('POST /auth/oauth/link/github (signed in) answers the provider URL', async () => {
    const user = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/oauth/link/github',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(res.statusCode).toBe(200);
    const url = new URL(res.json().url);
    expect(url.origin).toBe('https://github.com');
    expect(url.searchParams.get('redirect_uri')).toBe(`${BASE}/api/auth/callback/github`);
  });

  it('linking needs a recent sign-in (anonymous users excepted): a linked provider is a way in', async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 hour' WHERE user_id = $1`, [user.userId]);
    const link = (token: string) =>
      t.app.inject({ method: 'POST', url: '/auth/oauth/link/github', headers: { authorization: `Bearer ${token}` } });
    const stale = await link(user.token);
    expect(stale.statusCode).toBe(403);
    expect(stale.json().error.code).toBe('REAUTH_REQUIRED');

    const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
      userId: string;
      token: string;
    };
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '3 days' WHERE user_id = $1`, [anon.userId]);
    expect((await link(anon.token)).statusCode).toBe(200);
  });

  it('an unconfigured provider is 404 OAUTH_PROVIDER_UNKNOWN; a malformed id is 400', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/oauth/facebook' });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('OAUTH_PROVIDER_UNKNOWN');
    const bad = await t.app.inject({ method: 'GET', url: '/auth/oauth/Bad%20Id' });
    expect(bad.statusCode).toBe(400);
  });
});
