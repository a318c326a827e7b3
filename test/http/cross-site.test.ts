import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crossSiteWithCookies } from '../../src/http/security.plugin.js';
import { betterAuthCookie, createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a Better Auth session cookie authenticates /auth/* and /admin/* too, and nothing checked where a
// cookie-carrying change came from. A body-less POST needs no CORS preflight, and SameSite=Lax sends the cookie from
// another origin of the same site (a sibling subdomain, another port): a page there could disable any user with an
// administrator's cookie (POST /admin/users/:id/disable answered 200), or sign anyone out.
describe('cookie-carrying changes from another origin', () => {
  let t: TestApp;
  let cookie: string;
  let admin: { userId: string; token: string };
  let victim: { userId: string; token: string };
  const EVIL = 'https://evil.example';
  beforeAll(async () => {
    t = await createTestApp();
    const registered = await registerUser(t.app);
    admin = registered;
    victim = await registerUser(t.app);
    await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [admin.userId]);
    cookie = await betterAuthCookie(t.app, registered, t.config.server.base_url);
  });
  afterAll(() => t?.close());

  const disabled = async (userId: string) =>
    (await t.db.query<{ d: boolean }>('SELECT disabled_at IS NOT NULL AS d FROM users WHERE id = $1', [userId])).rows[0]
      ?.d;
  const disable = (headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url: `/admin/users/${victim.userId}/disable`, headers });

  it('refuses them with 403 INVALID_ORIGIN, by Origin or else by Referer, and changes nothing', async () => {
    const forged: Array<Record<string, string>> = [
      { cookie, origin: EVIL },
      { cookie, origin: 'null' },
      { cookie, referer: `${EVIL}/page` },
      { cookie, referer: 'not a url' },
    ];
    for (const headers of forged) {
      const res = await disable(headers);
      expect(res.statusCode, JSON.stringify(headers)).toBe(403);
      expect(res.json().error.code).toBe('INVALID_ORIGIN');
    }
    expect(await disabled(victim.userId)).toBe(false);
    const logout = await t.app.inject({ method: 'POST', url: '/auth/logout', headers: { cookie, origin: EVIL } });
    expect(logout.json().error.code).toBe('INVALID_ORIGIN');
    const still = await t.app.inject({ url: '/auth/session', headers: { cookie, origin: EVIL } });
    expect(still.statusCode).toBe(200); // a read is no forgery: the session is still there
  });

  it('lets the trusted origins, bearer tokens and clients that are not browsers through', async () => {
    const base = t.config.server.base_url;
    expect((await disable({ cookie, origin: base })).statusCode).toBe(200);
    expect(await disabled(victim.userId)).toBe(true);
    const enable = (headers: Record<string, string>) =>
      t.app.inject({ method: 'POST', url: `/admin/users/${victim.userId}/enable`, headers });
    expect((await enable({ cookie, referer: `${base}/console` })).statusCode).toBe(200);
    expect((await disable({ cookie })).statusCode).toBe(200); // curl: neither Origin nor Referer
    expect((await enable({ authorization: `Bearer ${admin.token}`, cookie, origin: EVIL })).statusCode).toBe(200);
  });

  it('decides from the method, the credential, the origin and whether Better Auth answers the route', () => {
    const trusted = new Set(['https://app.example']);
    const check = (method: string, route: string | undefined, headers: Record<string, string>) =>
      crossSiteWithCookies(method, route, headers, trusted);
    expect(check('POST', '/auth/logout', { cookie: 'a=b', origin: EVIL })).toBe(true);
    expect(check('DELETE', '/auth/sessions/:id', { cookie: 'a=b', origin: EVIL })).toBe(true);
    expect(check('POST', '/auth/logout', { cookie: 'a=b', origin: 'https://app.example' })).toBe(false);
    expect(check('GET', '/auth/session', { cookie: 'a=b', origin: EVIL })).toBe(false);
    expect(check('POST', '/auth/login', { origin: EVIL })).toBe(false); // no cookie: nothing to forge with
    expect(check('POST', undefined, { cookie: 'a=b', origin: EVIL })).toBe(true); // no route (a 404)
    expect(check('POST', '/api/auth/*', { cookie: 'a=b', origin: EVIL })).toBe(false); // the mount: Better Auth's check
    // Regression: every /api/auth/ URL was left to Better Auth, the gateway's own routes there included.
    expect(check('POST', '/api/auth/passkey/register', { cookie: 'a=b', origin: EVIL })).toBe(true);
  });

  // Regression: POST /api/auth/passkey/register is the gateway's route (Better Auth never sees it), but the check
  // skipped every URL under /api/auth/, so a page of any origin could store a passkey with a signed-in cookie.
  it("checks the gateway's own routes under /api/auth/ as their /auth/* aliases", async () => {
    const base = t.config.server.base_url;
    const post = (url: string, headers: Record<string, string>) =>
      t.app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json', ...headers },
        payload: { credential: {} },
      });
    for (const url of [
      '/api/auth/passkey/register',
      '/auth/passkey/register',
      '/api/auth/passkey/authenticate',
      '/auth/passkey/authenticate',
    ]) {
      const forged = await post(url, { cookie, origin: EVIL });
      expect(forged.statusCode, url).toBe(403);
      expect(forged.json().error.code, url).toBe('INVALID_ORIGIN');
      const trusted = await post(url, { cookie, origin: base });
      expect(trusted.json().error?.code, url).not.toBe('INVALID_ORIGIN');
    }
    const registered = await t.db.query('SELECT 1 FROM passkeys WHERE user_id = $1', [admin.userId]);
    expect(registered.rows).toEqual([]);
  });

  it("leaves Better Auth's own routes to Better Auth: served from a trusted origin, refused by it from another", async () => {
    const base = t.config.server.base_url;
    const user = await registerUser(t.app);
    const own = await betterAuthCookie(t.app, user, base);
    const signOut = (origin: string) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-out',
        headers: { cookie: own, origin, 'content-type': 'application/json' },
        payload: '{}',
      });
    const forged = await signOut(EVIL);
    expect(forged.statusCode).toBe(403);
    expect((await t.app.inject({ url: '/auth/session', headers: { cookie: own } })).statusCode).toBe(200);
    expect((await signOut(base)).statusCode).toBe(200);
    expect((await t.app.inject({ url: '/auth/session', headers: { cookie: own } })).statusCode).toBe(401);
  });
});
