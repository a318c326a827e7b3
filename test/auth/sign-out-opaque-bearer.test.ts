import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { betterAuthCookie, createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression (review G). README (POST /auth/logout): "With both a bearer token and a session cookie, the bearer's session is the one ended;
// the browser's session cookies are cleared only when they name that session (or no live one), never while their own
// session goes on. `POST /api/auth/sign-out` does the same." The mount accepts Better Auth's own session token as the
// bearer too (the `token` its sign-in bodies carry): with that bearer, /api/auth/sign-out clears a live session's cookie.
describe('sign-out with Better Auth’s own session token as the bearer and a cookie for another session', () => {
  let t: TestApp;
  let origin: string;
  beforeAll(async () => {
    t = await createTestApp();
    origin = t.config.server.base_url;
  });
  afterAll(() => t?.close());

  const alive = async (cookie: string) =>
    (await t.app.inject({ url: '/auth/session', headers: { cookie } })).statusCode === 200;
  const clears = (setCookie: string | string[] | undefined) =>
    ([] as string[])
      .concat(setCookie ?? [])
      .some((c) => /better-auth\.session_token=;/.test(c) || /Max-Age=0/i.test(c));
  /** Better Auth's opaque session token, as its sign-in body hands it to its clients. */
  const opaqueToken = async (user: { email: string; password: string }) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin, 'content-type': 'application/json' },
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    const token = (res.json() as { token?: string }).token;
    expect(typeof token).toBe('string');
    return token as string;
  };

  for (const url of ['/api/auth/sign-out']) {
    it(`${url}: ends the bearer's session and keeps the cookie of another live session`, async () => {
      const a = await registerUser(t.app);
      const b = await registerUser(t.app);
      const bearerA = await opaqueToken(a);
      const cookieB = await betterAuthCookie(t.app, b, origin);
      const res = await t.app.inject({
        method: 'POST',
        url,
        headers: { origin, 'content-type': 'application/json', cookie: cookieB, authorization: `Bearer ${bearerA}` },
        payload: '{}',
      });
      expect(res.statusCode).toBe(200);
      // The bearer's session ended...
      expect(
        (await t.app.inject({ url: '/api/auth/get-session', headers: { authorization: `Bearer ${bearerA}` } })).body,
      ).toBe('null');
      // ...the cookie's session goes on, and the browser must keep its cookie.
      expect(await alive(cookieB)).toBe(true);
      expect({ url, clearsCookie: clears(res.headers['set-cookie']) }).toEqual({ url, clearsCookie: false });
    });
  }
});
