import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { betterAuthCookie, createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a sign-out carrying a bearer for one session and a Better Auth cookie for another ended the bearer's
// session and cleared the browser's cookie, while the cookie's session stayed alive. The bearer is the credential (as
// on every route); the cookie is now cleared only when it names the session ended, or none that lives.
describe('sign-out with a bearer and a session cookie', () => {
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
  /** A Better Auth sign-in: its session cookie and our JWT for that same session. */
  const signedIn = async () => {
    const user = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin, 'content-type': 'application/json' },
      payload: { email: user.email, password: user.password },
    });
    const cookie = ([] as string[])
      .concat(res.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0])
      .join('; ');
    return { ...user, cookie, jwt: res.headers['x-auth-token'] as string };
  };

  const routes = {
    'POST /api/auth/sign-out': (headers: Record<string, string>) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-out',
        headers: { origin, 'content-type': 'application/json', ...headers },
        payload: '{}',
      }),
    'POST /auth/logout': (headers: Record<string, string>) =>
      t.app.inject({ method: 'POST', url: '/auth/logout', headers }),
  };

  for (const [name, signOut] of Object.entries(routes)) {
    describe(name, () => {
      it("ends the bearer's session and keeps a cookie that names another live session", async () => {
        const a = await registerUser(t.app);
        const b = await registerUser(t.app);
        const cookieB = await betterAuthCookie(t.app, b, origin);
        const res = await signOut({ cookie: cookieB, authorization: `Bearer ${a.token}` });
        expect(res.statusCode).toBe(200);
        expect(
          (await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${a.token}` } })).statusCode,
        ).toBe(401);
        expect(await alive(cookieB)).toBe(true);
        expect(clears(res.headers['set-cookie'])).toBe(false);
      });

      it('clears a cookie that names the session the bearer ended', async () => {
        const user = await signedIn();
        expect(typeof user.jwt).toBe('string');
        const res = await signOut({ cookie: user.cookie, authorization: `Bearer ${user.jwt}` });
        expect(res.statusCode).toBe(200);
        expect(clears(res.headers['set-cookie'])).toBe(true);
        expect(await alive(user.cookie)).toBe(false);
      });

      it('with the cookie alone: ends its session and clears it', async () => {
        const user = await signedIn();
        const res = await signOut({ cookie: user.cookie });
        expect(res.statusCode).toBe(200);
        expect(clears(res.headers['set-cookie'])).toBe(true);
        expect(await alive(user.cookie)).toBe(false);
      });
    });
  }

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

  // Found by review (G): the cookie's own session was looked up only when the bearer was our JWT.
  for (const url of ['/api/auth/sign-out']) {
    it(`${url}, with Better Auth's opaque token as the bearer: ends the bearer's session and keeps the cookie of another live session`, async () => {
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
