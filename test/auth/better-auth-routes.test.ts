import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { servesBetterAuthRoute } from '../../src/auth/mount.plugin.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

/**
 * The Better Auth routes the gateway serves at /api/auth/*, reviewed one by one: the rest answer 404, since our
 * /auth/* routes do the same with recent authentication, audit rows, lockouts and user verification, or they hand
 * out what no client should get. A Better Auth upgrade that adds an endpoint leaves it unserved.
 */
const SERVED = [
  '/callback/:id',
  '/error',
  '/get-session',
  '/ok',
  '/reset-password',
  '/reset-password/:token',
  '/sign-in/email',
  '/sign-out',
  '/sign-up/email',
  '/two-factor/verify-backup-code',
  '/two-factor/verify-totp',
  '/update-user',
];

describe("Better Auth's routes on /api/auth/*", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  /** Every endpoint of the running Better Auth instance (its plugins' too), with its methods. */
  const endpoints = () => {
    const { betterAuth } = t.app.engine as unknown as {
      betterAuth: { api: Record<string, { path?: string; options?: { method?: unknown } }> };
    };
    return Object.values(betterAuth.api)
      .filter((e) => typeof e?.path === 'string')
      .map((e) => ({ path: e.path as string, methods: [e.options?.method ?? 'GET'].flat() as string[] }));
  };

  it('serves the reviewed routes only', () => {
    const served = endpoints()
      .map((e) => e.path)
      .filter((path) => servesBetterAuthRoute(path.replace(/:\w+/g, 'x')));
    expect([...new Set(served)].sort()).toEqual(SERVED);
  });

  it('answers 404 NOT_FOUND on every other endpoint, signed in or not, however the path is spelled', async () => {
    const user = await registerUser(t.app);
    const unserved = endpoints().filter((e) => !SERVED.includes(e.path));
    // Among them: other sessions' tokens, the TOTP secret, a password oracle, provider tokens, unaudited passkeys.
    for (const path of ['/list-sessions', '/two-factor/get-totp-uri', '/verify-password', '/get-access-token']) {
      expect(unserved.map((e) => e.path)).toContain(path);
    }
    expect(unserved.map((e) => e.path)).toContain('/passkey/verify-registration');
    // And a plain verification link for any address with an unverified account, which let the address's owner verify a
    // registrant's account, password and all (/auth/email/verify/resend sends one only to a caller signed in to it).
    expect(unserved.map((e) => e.path)).toContain('/send-verification-email');
    for (const { path, methods } of unserved) {
      const url = `/api/auth${path.replace(/:\w+/g, 'x')}`;
      for (const spelling of [url, `${url}/`, `${url}//`, url.replace('/api/auth/', '/api/auth/./')]) {
        for (const method of methods.filter((m) => m !== '*')) {
          const res = await t.app.inject({
            method: method as 'GET' | 'POST',
            url: spelling,
            headers: { authorization: `Bearer ${user.token}` },
            payload: method === 'GET' ? undefined : { password: user.password, code: '123456' },
          });
          expect([spelling, method, res.statusCode]).toEqual([spelling, method, 404]);
          expect(res.json().error.code).toBe('NOT_FOUND');
        }
      }
    }
  });

  it('answers a served route asked with a method it does not take in the error envelope (404 NOT_FOUND)', async () => {
    const user = await registerUser(t.app);
    const served = endpoints().filter((e) => SERVED.includes(e.path) && !e.methods.includes('*'));
    expect(served.length).toBeGreaterThanOrEqual(SERVED.length - 1);
    for (const { path, methods } of served) {
      const url = `/api/auth${path.replace(/:\w+/g, 'x')}`;
      for (const method of (['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const).filter((m) => !methods.includes(m))) {
        const res = await t.app.inject({
          method,
          url,
          headers: { authorization: `Bearer ${user.token}`, origin: t.config.server.base_url },
          payload: method === 'GET' ? undefined : {},
        });
        expect([url, method, res.statusCode]).toEqual([url, method, 404]);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        expect(res.json().error.code).toBe('NOT_FOUND');
      }
    }
  });

  // Regression: GET /api/auth/verify-email took the gateway's own JWT (HS256, the same secret) and answered 500 when
  // its payload was not a verification token's. Nothing hands out Better Auth's link (ours is /auth/email/verify).
  // Regression: left unset, Better Auth's origin, callbackURL and CSRF checks switch off under NODE_ENV=test or TEST
  // (as here), so no test could see them, and a deployment with either set would run without them.
  it("keeps Better Auth's origin and callbackURL checks on, whatever NODE_ENV or TEST say", async () => {
    expect(process.env.NODE_ENV).toBe('test');
    const user = await registerUser(t.app);
    const signIn = (headers: Record<string, string>, extra: object = {}) =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        headers: { 'content-type': 'application/json', ...headers },
        payload: JSON.stringify({ email: user.email, password: user.password, ...extra }),
      });
    const evilCallback = await signIn({ origin: 'http://localhost:3000' }, { callbackURL: 'https://evil.example/x' });
    expect([evilCallback.statusCode, evilCallback.json().code]).toEqual([403, 'INVALID_CALLBACK_URL']);
    const reset = await t.app.inject({ url: '/api/auth/reset-password/abc?callbackURL=https://evil.example/x' });
    expect(reset.statusCode).toBe(403);
    expect(reset.headers.location).toBeUndefined();
    // A cookie-carrying POST from a page on another origin (a cross-site form or fetch).
    const crossSite = await signIn({ origin: 'https://evil.example', cookie: 'better-auth.session_token=x' });
    expect(crossSite.statusCode).toBe(403);
    expect((await signIn({ origin: 'http://localhost:3000' })).statusCode).toBe(200);
  });

  it('does not serve verify-email, whatever token it is given', async () => {
    const user = await registerUser(t.app);
    for (const token of [user.token, 'not-a-jwt']) {
      for (const query of [`token=${token}`, `token=${token}&callbackURL=/`]) {
        const res = await t.app.inject({ url: `/api/auth/verify-email?${query}` });
        expect([query, res.statusCode]).toEqual([query, 404]);
        expect(res.json().error.code).toBe('NOT_FOUND');
      }
    }
  });

  it('waits for the session events after the OAuth callback, a GET that can change the user', async () => {
    const user = await registerUser(t.app);
    const events = t.app.sessionEvents;
    const sync = events.sync;
    let syncs = 0;
    events.sync = (...args: Parameters<typeof sync>) => {
      syncs++;
      return sync.apply(events, args);
    };
    try {
      // A cached session, so the cache is not idle (an idle cache has nothing to wait for).
      const me = () => t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${user.token}` } });
      expect((await me()).statusCode).toBe(200);
      expect((await me()).statusCode).toBe(200);
      expect((await t.app.inject({ url: '/api/auth/ok' })).statusCode).toBe(200);
      expect(syncs).toBe(0);
      const callback = await t.app.inject({ url: '/api/auth/callback/github?state=unknown&code=x' });
      expect(callback.statusCode).toBeLessThan(500);
      expect(syncs).toBe(1);
    } finally {
      events.sync = sync;
    }
  });
});
