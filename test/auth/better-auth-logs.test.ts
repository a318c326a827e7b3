import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

// Regression: every probe of Better Auth's OAuth callback without (or with a forged) state wrote an error-level line
// ("State not found", "Failed to parse state"): anyone could flood the error alerts at the route's rate limit.
describe("Better Auth's log lines about a client's malformed OAuth callback", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        oauth: {
          google: { client_id: 'google-client', client_secret: 'google-secret-value' },
          github: { client_id: 'github-client', client_secret: 'github-secret-value' },
        },
      },
    });
  });
  afterAll(() => t?.close());

  it('are answered (a redirect with an error) and not logged as errors', async () => {
    const before = t.logs.lines.length;
    for (const url of [
      '/api/auth/callback/google',
      '/api/auth/callback/google?code=abc',
      '/api/auth/callback/google?state=abc&code=abc',
      '/api/auth/callback/github?state=abc&code=abc',
    ]) {
      const res = await t.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(302);
      expect(new URL(res.headers.location as string).searchParams.get('error'), url).not.toBeNull();
    }
    const errors = t.logs.lines.slice(before).filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
    expect(errors).toEqual([]);
  });

  // Regression: Better Auth's origin check logged each refused Origin or callbackURL at error level, with the value the
  // client chose: any client could flood the error alerts, and write what it liked into the log.
  it("Better Auth's refusal of an untrusted origin or callback URL is a 403, logged below error level without the value", async () => {
    const before = t.logs.lines.length;
    const signOut = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-out',
      headers: {
        origin: 'https://evil.example',
        cookie: 'better-auth.session_token=x.y',
        'content-type': 'application/json',
      },
      payload: {},
    });
    expect(signOut.statusCode).toBe(403);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'content-type': 'application/json' },
      payload: {
        email: 'x@example.com',
        password: 'whatever-password',
        callbackURL: 'https://evil.example/?note=planted-value',
      },
    });
    expect(signIn.statusCode).toBe(403);
    const logged = t.logs.lines.slice(before);
    expect(logged.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
    expect(logged.join('\n')).not.toContain('planted-value');
    expect(logged.join('\n')).not.toContain('evil.example');
  });
});
