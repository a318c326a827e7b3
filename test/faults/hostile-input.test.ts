import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// SLOW-ish (a few thousand requests): generated malformed bodies, headers and tokens against every /auth/* route and
// Better Auth's /api/auth/* routes. Never a 5xx, never a hang (each request is bounded by the test timeout), the
// process survives, and memory returns near its baseline afterwards. WebSocket frames and Telegram updates belong to
// the channels branch. FUZZ_RUNS raises the count.
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);

const ROUTES = [
  '/auth/register',
  '/auth/login',
  '/auth/logout',
  '/auth/session',
  '/auth/health',
  '/api/auth/sign-up/email',
  '/api/auth/sign-in/email',
  '/api/auth/sign-out',
  '/api/auth/get-session',
  '/api/auth/list-sessions',
  '/api/auth/revoke-session',
  '/api/auth/revoke-sessions',
  '/api/auth/revoke-other-sessions',
  '/api/auth/change-password',
  '/api/auth/change-email',
  '/api/auth/update-user',
  '/api/auth/delete-user',
  '/api/auth/request-password-reset',
  '/api/auth/forget-password',
  '/api/auth/reset-password',
  '/api/auth/verify-email',
  '/api/auth/send-verification-email',
  '/api/auth/passkey/generate-register-options',
  '/api/auth/passkey/verify-registration',
  '/api/auth/passkey/generate-authenticate-options',
  '/api/auth/passkey/verify-authentication',
  '/api/auth/passkey/list-user-passkeys',
  '/api/auth/passkey/delete-passkey',
  '/api/auth/passkey/update-passkey',
  '/api/auth/ok',
  '/api/auth/error',
];

function gc(): () => void {
  setFlagsFromString('--expose_gc');
  return runInNewContext('gc') as () => void;
}

describe('hostile input at volume', () => {
  let t: TestApp;
  let token = '';
  beforeAll(async () => {
    t = await createTestApp();
    ({ token } = await registerUser(t.app));
  });
  afterAll(() => t?.close());

  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  const jwtLike = fc.oneof(
    fc.string(),
    fc.constant('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwic2lkIjoieSJ9.'), // alg none
    fc.tuple(fc.jsonValue(), fc.jsonValue(), fc.string()).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${b64(s)}`),
    fc.tuple(fc.jsonValue(), fc.string()).map(([p, s]) => `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(p)}.${s}`),
    fc.constant('x'.repeat(9000)),
  );
  const authorization = fc.oneof(
    fc.constant(undefined),
    fc.constant('__valid__'),
    jwtLike.map((j) => `Bearer ${j}`),
    fc.string().map((s) => `Basic ${s}`),
    fc.string({ unit: 'binary', maxLength: 200 }),
  );
  const contentType = fc.constantFrom(
    undefined,
    'application/json',
    'application/json; charset=utf-16',
    'application/json; charset=latin1',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=xyz',
    'application/octet-stream',
    '',
    ';;;',
    'application/json\u0000',
  );
  const hostileObject = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }),
    fc.record(
      {
        email: fc.oneof(fc.emailAddress(), fc.string(), fc.jsonValue()),
        password: fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue()),
        name: fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.jsonValue()),
        token: jwtLike,
        newPassword: fc.string(),
        currentPassword: fc.string(),
        sessionToken: fc.string(),
        callbackURL: fc.oneof(fc.webUrl(), fc.string()),
      },
      { requiredKeys: [] },
    ),
    fc.constant({ __proto__: { admin: true }, constructor: { prototype: { polluted: true } } }),
    fc.constant(JSON.parse('{"__proto__":{"polluted":true},"email":"a@example.com","password":"SecurePassword123!"}')),
  );
  const body = fc.oneof(
    fc.constant(undefined),
    hostileObject.map((v) => JSON.stringify(v) ?? 'null'),
    fc.string({ unit: 'binary', maxLength: 500 }),
    fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a)),
    fc.nat({ max: 200 }).map((n) => `${'['.repeat(n * 50)}${']'.repeat(n * 50)}`), // deep nesting
    fc.constant(`{"email":"${'a'.repeat(70_000)}"}`), // over body_limit
    fc.constant('{"email": "a@example.com", "password": '), // truncated
  );
  const request = fc.record({
    method: fc.constantFrom('GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
    route: fc.oneof(
      fc.constantFrom(...ROUTES),
      fc.tuple(fc.constantFrom(...ROUTES), fc.string({ maxLength: 30 })).map(([r, s]) => `${r}${encodeURI(s)}`),
      fc.tuple(fc.constantFrom(...ROUTES), fc.webQueryParameters()).map(([r, q]) => `${r}?${q}`),
    ),
    authorization,
    contentType,
    body,
    cookie: fc.option(
      fc.oneof(
        fc.string().map((s) => `better-auth.session_token=${encodeURIComponent(s)}`),
        fc.string({ unit: 'binary', maxLength: 100 }),
      ),
      { nil: undefined },
    ),
    origin: fc.option(fc.oneof(fc.webUrl(), fc.string()), { nil: undefined }),
    forwarded: fc.option(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()), { nil: undefined }),
  });

  it(`${RUNS} generated requests: no 5xx, no hang, memory back near baseline`, async () => {
    const collect = gc();
    collect();
    const baseline = process.memoryUsage().heapUsed;
    const serverErrors: string[] = [];
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {};
        const auth = r.authorization === '__valid__' ? `Bearer ${token}` : r.authorization;
        // Header values a real HTTP client could not send (control characters) are not a server concern.
        const legal = (v: string) =>
          [...v].every((ch) => {
            const c = ch.charCodeAt(0);
            return c === 9 || (c >= 32 && c !== 127 && c <= 255);
          });
        if (auth !== undefined && legal(auth)) headers.authorization = auth;
        if (r.contentType !== undefined && legal(r.contentType)) headers['content-type'] = r.contentType;
        if (r.cookie !== undefined && legal(r.cookie)) headers.cookie = r.cookie;
        if (r.origin !== undefined && legal(r.origin)) headers.origin = r.origin;
        if (r.forwarded !== undefined && legal(r.forwarded)) headers['x-forwarded-for'] = r.forwarded;
        const withBody = !['GET', 'HEAD', 'OPTIONS'].includes(r.method) && r.body !== undefined;
        const res = await t.app.inject({
          method: r.method as 'GET',
          url: r.route,
          headers,
          ...(withBody ? { payload: r.body } : {}),
        });
        if (res.statusCode >= 500) {
          serverErrors.push(`${res.statusCode} ${r.method} ${r.route} ${res.body.slice(0, 200)}`);
        }
        return res.statusCode < 500;
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: 120_000 },
    );
    expect(serverErrors).toEqual([]);
    // The gateway still works.
    expect((await t.app.inject({ method: 'GET', url: '/auth/health' })).statusCode).toBe(200);
    collect();
    const growth = process.memoryUsage().heapUsed - baseline;
    expect(growth).toBeLessThan(48 * 2 ** 20);
  }, 180_000);
});
