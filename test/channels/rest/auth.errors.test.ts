import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// Every error code of the core routes, with its status and the one JSON shape.
describe('error responses', () => {
  let t: TestApp;
  let user: Awaited<ReturnType<typeof registerUser>>;
  beforeAll(async () => {
    t = await createTestApp();
    user = await registerUser(t.app, { email: 'taken@example.com' });
  });
  afterAll(() => t?.close());

  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    t.app.inject({
      method: 'POST',
      url,
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      headers: { 'content-type': 'application/json', ...headers },
    });

  const expectError = (res: { statusCode: number; json(): unknown; body: string }, status: number, code: string) => {
    expect(res.statusCode, res.body).toBe(status);
    const body = res.json() as { success: boolean; error: { code: string; message: string } };
    expect(body.success).toBe(false);
    expect(body.error.code).toBe(code);
    expect(typeof body.error.message).toBe('string');
    expect(res.body).not.toMatch(/at .*\.(ts|js):\d+/); // no stack trace
    return body.error as { code: string; message: string; field?: string };
  };

  it.each([
    ['missing email', { password: 'SecurePassword123!', name: 'x' }, 'email'],
    ['not an email', { email: 'nope', password: 'SecurePassword123!' }, 'email'],
    ['short password', { email: 'a@example.com', password: 'short' }, 'password'],
    ['password not a string', { email: 'a@example.com', password: 12345678 }, 'password'],
    ['password over the maximum', { email: 'a@example.com', password: 'x'.repeat(129) }, 'password'],
    ['name too long', { email: 'a@example.com', password: 'SecurePassword123!', name: 'n'.repeat(101) }, 'name'],
  ])('register: 400 VALIDATION_FAILED naming the field (%s)', async (_label, body, field) => {
    const error = expectError(await post('/auth/register', body), 400, 'VALIDATION_FAILED');
    expect(error.field).toBe(field);
    expect(error.message).toContain(field);
  });

  it('register: a body that is not an object', async () => {
    expectError(await post('/auth/register', '[1,2]'), 400, 'VALIDATION_FAILED');
    expectError(await post('/auth/register', '"string"'), 400, 'VALIDATION_FAILED');
  });

  it('400 MALFORMED_JSON for broken JSON and an empty JSON body', async () => {
    expectError(await post('/auth/login', '{"email": "x'), 400, 'MALFORMED_JSON');
    expectError(await post('/auth/login', ''), 400, 'MALFORMED_JSON');
  });

  it('401 INVALID_CREDENTIALS: the same code and message for an unknown email and a wrong password', async () => {
    const unknown = expectError(
      await post('/auth/login', { email: 'nobody@example.com', password: 'SecurePassword123!' }),
      401,
      'INVALID_CREDENTIALS',
    );
    const wrong = expectError(
      await post('/auth/login', { email: user.email, password: 'WrongPassword123!' }),
      401,
      'INVALID_CREDENTIALS',
    );
    expect(unknown).toEqual(wrong);
  });

  it('409 EMAIL_TAKEN, whatever the case and surrounding spaces', async () => {
    expectError(
      await post('/auth/register', { email: '  TAKEN@Example.COM ', password: 'SecurePassword123!' }),
      409,
      'EMAIL_TAKEN',
    );
  });

  it('413 BODY_TOO_LARGE', async () => {
    const big = JSON.stringify({ email: 'a@example.com', password: 'x'.repeat(t.config.server.body_limit) });
    expectError(await post('/auth/login', big), 413, 'BODY_TOO_LARGE');
  });

  it('415 UNSUPPORTED_MEDIA_TYPE', async () => {
    expectError(await post('/auth/login', 'email=a', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(
      await post('/auth/login', 'email=a&password=b', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
  });

  it('404 NOT_FOUND as JSON for unknown routes and methods', async () => {
    expectError(await t.app.inject({ url: '/nope' }), 404, 'NOT_FOUND');
    expectError(await t.app.inject({ method: 'DELETE', url: '/auth/login' }), 404, 'NOT_FOUND');
  });

  // Regression: the router's own 414 used Fastify's body (and echoed the path); 404 echoed paths of any length.
  it('414 URI_TOO_LONG for an over-long path parameter, and a 404 that does not echo a long path', async () => {
    expectError(
      await t.app.inject({ method: 'DELETE', url: `/auth/passkeys/${'x'.repeat(300)}` }),
      414,
      'URI_TOO_LONG',
    );
    const res = await t.app.inject({ url: `/nothing${`/${'y'.repeat(100)}`.repeat(20)}` });
    expectError(res, 404, 'NOT_FOUND');
    expect(res.body.length).toBeLessThan(400);
  });

  it('401 AUTH_REQUIRED without credentials, INVALID_TOKEN with a bad one', async () => {
    expectError(await t.app.inject({ url: '/auth/session' }), 401, 'AUTH_REQUIRED');
    expectError(
      await t.app.inject({ url: '/auth/session', headers: { authorization: 'Bearer nope' } }),
      401,
      'INVALID_TOKEN',
    );
    expectError(
      await t.app.inject({ url: '/auth/session', headers: { authorization: 'Basic abc' } }),
      401,
      'INVALID_TOKEN',
    );
    expectError(await t.app.inject({ method: 'POST', url: '/auth/logout' }), 401, 'AUTH_REQUIRED');
    // Cookies other than the session's (the device cookie, an app's own) are no credential: AUTH_REQUIRED.
    expectError(
      await t.app.inject({ url: '/auth/session', headers: { cookie: 'gateway_device=abc; theme=dark' } }),
      401,
      'AUTH_REQUIRED',
    );
    expectError(
      await t.app.inject({ url: '/auth/session', headers: { cookie: 'theme=dark; better-auth.session_token=forged' } }),
      401,
      'INVALID_TOKEN',
    );
    expectError(
      await t.app.inject({ url: '/api/auth/get-session', headers: { authorization: 'Bearer a.b.c' } }),
      401,
      'INVALID_TOKEN',
    );
  });

  it('every response carries a request id', async () => {
    const res = await t.app.inject({ url: '/auth/health', headers: { 'x-request-id': 'abc-123' } });
    expect(res.headers['x-request-id']).toBe('abc-123');
    const hostile = await t.app.inject({ url: '/auth/health', headers: { 'x-request-id': 'a\nb c'.repeat(30) } });
    expect(hostile.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

// Regression: with verification required, any sign-up error for a taken address became 409 EMAIL_TAKEN, a free one got
// its real error: a password of astral characters (within the schema's code points, over Better Auth's UTF-16 units)
// told a taken address apart, which README promises nothing does.
describe('register with auth.require_email_verification: a taken address answers as a free one', () => {
  let t: TestApp;
  const taken = 'taken@example.com';
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { require_email_verification: true } } });
    await registerUser(t.app, { email: taken });
  });
  afterAll(() => t?.close());

  const register = (email: string, password: string) =>
    t.app.inject({ method: 'POST', url: '/auth/register', payload: { email, password } });

  it('a password over the maximum in UTF-16 units: 400 VALIDATION_FAILED naming password, for either address', async () => {
    const astral = '\u{1F680}'.repeat(t.config.auth.password.max_length);
    const signUp = vi.spyOn(t.app.engine, 'signUpEmail');
    const free = await register('free@example.com', astral);
    const takenRes = await register(taken, astral);
    expect(free.statusCode, free.body).toBe(400);
    expect(free.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'password' });
    expect(takenRes.json()).toEqual(free.json());
    expect(signUp).not.toHaveBeenCalled(); // refused before anything looks at the address
    signUp.mockRestore();
  });

  it('the engine answers EMAIL_TAKEN for a duplicate only, never for another refusal of a taken address', async () => {
    const astral = '\u{1F680}'.repeat(t.config.auth.password.max_length);
    const signUp = t.app.engine.signUpEmail({ email: taken, password: astral, name: '' }, new Headers());
    await expect(signUp).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'password' } });
  });
});

// Only a database server can go away under a running gateway; the embedded one lives and dies with the process.
describe.skipIf(!process.env.TEST_DATABASE_URL)('503 when the database is unreachable', () => {
  it('answers DATABASE_UNAVAILABLE on routes and 503 on health, never a 500', async () => {
    const t = await createTestApp();
    const { token, email, password } = await registerUser(t.app);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email, password },
      headers: { 'content-type': 'application/json' },
    });
    const cookie = [signIn.headers['set-cookie'] ?? []]
      .flat()
      .map((c) => c.split(';')[0])
      .join('; ');
    expect(cookie).toContain('better-auth.session_token=');
    await t.db.close(); // the database goes away under the running app
    try {
      const health = await t.app.inject({ url: '/auth/health' });
      expect(health.statusCode).toBe(503);
      expect(health.json()).toMatchObject({
        success: false,
        status: 'unavailable',
        error: { code: 'DATABASE_UNAVAILABLE' },
      });
      const session = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
      expect(session.statusCode).toBe(503);
      expect(session.json().error.code).toBe('DATABASE_UNAVAILABLE');
      expect(session.headers['retry-after']).toBeDefined();
      // A browser's cookie session too: a 401 would tell the client its user is signed out.
      const byCookie = await t.app.inject({ url: '/auth/session', headers: { cookie } });
      expect(byCookie.statusCode).toBe(503);
      expect(byCookie.json().error.code).toBe('DATABASE_UNAVAILABLE');
    } finally {
      await t.app.close();
      await t.testDb.drop().catch(() => {});
    }
  });
});

describe('POST /auth/logout over HTTPS', () => {
  it("expires Better Auth's cookies under their __Secure- names, with Secure", async () => {
    const t = await createTestApp({ config: { server: { base_url: 'https://auth.example.com' } } });
    try {
      const { token } = await registerUser(t.app);
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/logout',
        headers: { authorization: `Bearer ${token}`, cookie: '__Secure-better-auth.session_token=abc' },
      });
      expect(res.statusCode).toBe(200);
      const cleared = [res.headers['set-cookie'] ?? []].flat();
      expect(cleared).toContain(
        '__Secure-better-auth.session_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure',
      );
      expect(cleared.every((c) => c.startsWith('__Secure-') && c.endsWith('; Secure'))).toBe(true);
    } finally {
      await t.close();
    }
  });
});
