import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { betterAuthCookie, createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a cookie session used once due for renewal was extended by the gateway's own sliding renewal (the row
// only, with an X-Auth-Token no cookie client reads); Better Auth then found the row fresh and never set its cookie
// again, so the browser dropped the cookie at sign-in + expires_in however often it was used.
describe('a Better Auth cookie session due for renewal', () => {
  const ORIGIN = 'http://localhost:3000';
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const tokenOf = (cookie: string) =>
    decodeURIComponent(/better-auth\.session_token=([^;]+)/.exec(cookie)?.[1] ?? '').split('.')[0] ?? '';
  const expiryOf = async (token: string) =>
    (await t.db.query<{ expires_at: Date }>('SELECT expires_at FROM sessions WHERE token = $1', [token])).rows[0]
      ?.expires_at as Date;
  /** As if the session were update_age + 1 minute old. */
  const age = async (token: string) => {
    const { expires_in: expiresIn, update_age: updateAge } = t.config.auth.session;
    await t.db.query(`UPDATE sessions SET expires_at = now() + make_interval(secs => $2) WHERE token = $1`, [
      token,
      expiresIn - updateAge - 60,
    ]);
    return expiryOf(token);
  };
  const sessionCookieIn = (setCookie: string | string[] | undefined) =>
    ([] as string[]).concat(setCookie ?? []).find((c) => /better-auth\.session_token=/.test(c));

  it.each(['/auth/session', '/auth/sessions', '/api/auth/get-session'])(
    'GET %s extends it through Better Auth, whose refreshed cookie the answer carries',
    async (url) => {
      const cookie = await betterAuthCookie(t.app, await registerUser(t.app), ORIGIN);
      const token = tokenOf(cookie);
      const before = await age(token);
      const res = await t.app.inject({ url, headers: { cookie } });
      expect(res.statusCode).toBe(200);
      expect((await expiryOf(token)).getTime()).toBeGreaterThan(before.getTime() + 3600_000);
      const refreshed = sessionCookieIn(res.headers['set-cookie']);
      expect(refreshed).toMatch(new RegExp(`Max-Age=${t.config.auth.session.expires_in}`));
      // The gateway's own routes renew no bearer token for a cookie (the mount hands one out with any new cookie).
      if (url.startsWith('/auth/')) expect(res.headers['x-auth-token']).toBeUndefined();

      // Renewed: the next use sets nothing.
      const next = await t.app.inject({ url, headers: { cookie: refreshed?.split(';')[0] ?? '' } });
      expect(next.statusCode).toBe(200);
      expect(sessionCookieIn(next.headers['set-cookie'])).toBeUndefined();
    },
  );
});
