import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CloseCode, MAX_ID_LENGTH } from '../../src/channels/websocket/protocol.js';
import { ERROR_CATALOGUE } from '../../src/errors/index.js';
import { createTelegramBotApi, type TelegramBotApi } from '../helpers/telegram-bot-api.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import { listen } from '../helpers/ws-client.js';

// SLOW-ish (a few thousand requests, about half a minute): generated hostile input at every entry point.
// - HTTP: every route the app registers (read from the app itself: registeredRoutes(), plus Better Auth's own routes
//   behind the /api/auth/* mount, plus the CORS preflight on every path), with every method the route has, path
//   parameters filled with generated values, and generated bodies, headers and tokens (junk, and values that pass the
//   route's own schema from the OpenAPI document so they reach the handlers): never a 5xx, and every error of our own
//   routes is the JSON envelope with a catalogued code.
// - WebSocket /ws/chat over a real socket: generated frames before and after authentication; every frame gets the
//   documented answer (README "WebSocket chat": frames, codes, close codes) and nothing else.
// - Telegram: generated updates POSTed to the webhook as Telegram would, and junk with a wrong secret: 200 / 400 / 401
//   as documented, and no update makes the bot fail.
// Afterwards the process still serves, no socket is left open and memory is back near its baseline.
// FUZZ_RUNS scales everything (default 2000 HTTP requests; WebSocket and Telegram runs in proportion).
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const WS_RUNS = Math.max(50, Math.round(RUNS / 8));
const TELEGRAM_RUNS = Math.max(50, Math.round(RUNS / 4));
const PER_ROUTE_MIN = 4;

const BOT_TOKEN = '423456789:AAE-hostile-input-token';
const WEBHOOK_SECRET = 'hostile-input-webhook-secret-0123456789';
const MAX_FRAME = 16_384;
const CATALOGUED = new Set(Object.keys(ERROR_CATALOGUE));

function gc(): () => void {
  setFlagsFromString('--expose_gc');
  return runInNewContext('gc') as () => void;
}

/** Header values a real HTTP client could not send (control characters) are not a server concern. */
const legalHeader = (v: string) =>
  [...v].every((ch) => {
    const c = ch.charCodeAt(0);
    return c === 9 || (c >= 32 && c !== 127 && c <= 255);
  });

/** A JSON text Fastify's parser refuses (400) because it would pollute a prototype. */
const poisoned = (text: string) => {
  let found = false;
  JSON.parse(text, (key, value) => {
    if (key === '__proto__' || (key === 'constructor' && value && typeof value === 'object' && 'prototype' in value)) {
      found = true;
    }
    return value;
  });
  return found;
};

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

describe('hostile input at volume', () => {
  let t: TestApp;
  let botApi: TelegramBotApi;
  const collect = gc();
  let baseline = 0;

  beforeAll(async () => {
    botApi = await createTelegramBotApi({ token: BOT_TOKEN });
    t = await createTestApp({
      config: {
        telegram: { bot_token: BOT_TOKEN, api_root: botApi.apiRoot, mode: 'webhook', webhook_secret: WEBHOOK_SECRET },
        websocket: { max_frame_bytes: MAX_FRAME },
        // Sockets are opened one after another; the free license's 2 connections would only add races with the
        // server-side close of the previous one.
        licenses: { types: { free: { resource_limits: { max_ws_connections: 1000, messages_per_minute: 100_000 } } } },
      },
    });
    // Warm up (lazy initialisation: the bot's getMe, the OpenAPI document) before the baseline.
    await t.app.openapiDocument();
    await t.app.inject({ method: 'POST', url: '/telegram/webhook', headers: secretHeader, payload: { update_id: 1 } });
    collect();
    baseline = process.memoryUsage().heapUsed;
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await botApi?.close();
  });

  const secretHeader = { 'x-telegram-bot-api-secret-token': WEBHOOK_SECRET };

  // --- tokens ---------------------------------------------------------------------------------------------------

  /** Tokens that are not a valid session: junk, unsigned, wrongly signed, and correctly signed for no live session. */
  const forgedToken = (): fc.Arbitrary<string> =>
    fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.constant('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwic2lkIjoieSJ9.'), // alg none
      fc.tuple(fc.jsonValue(), fc.jsonValue(), fc.string()).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${b64(s)}`),
      fc.tuple(fc.jsonValue(), fc.string()).map(([p, s]) => `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(p)}.${s}`),
      // Signed with the real secret: a session that does not exist, claims of the wrong types, an expired token.
      fc
        .tuple(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }))
        .map(([sub, sid]) => t.app.authenticator.issueToken(sub, sid, new Date(Date.now() + 3_600_000))),
      fc
        .record({ sub: fc.jsonValue(), sid: fc.jsonValue(), exp: fc.integer({ min: 1, max: 2 ** 40 }) })
        .map((claims) => t.app.jwt.sign(claims as object)),
      fc.constant(null).map(() => t.app.authenticator.issueToken('user_x', 'sess_x', new Date(Date.now() - 60_000))),
      fc.constant('x'.repeat(9000)),
    );

  // --- HTTP -----------------------------------------------------------------------------------------------------

  interface Route {
    method: string;
    url: string;
    /** Our route (Fastify schema, our error envelope) rather than one of Better Auth's behind the mount. */
    ours: boolean;
  }

  /** Every route the app serves, collected from the app. */
  async function allRoutes(): Promise<Route[]> {
    const routes: Route[] = [];
    const seen = new Set<string>();
    const add = (method: string, url: string, ours: boolean) => {
      const key = `${method} ${url}`;
      if (seen.has(key)) return;
      seen.add(key);
      routes.push({ method, url, ours });
    };
    const registered = t.app.registeredRoutes();
    for (const r of registered) add(r.method, r.url, r.url !== '/api/auth/*');
    // Better Auth's routes behind the /api/auth/* mount, as its own OpenAPI generator lists them.
    const doc = await t.app.openapiDocument();
    for (const [path, item] of Object.entries(doc.paths)) {
      if (!path.startsWith('/api/auth/')) continue;
      const url = path.replace(/\{([^}]+)\}/g, ':$1');
      for (const method of Object.keys(item as object)) {
        if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
        const m = method.toUpperCase();
        if (!seen.has(`${m} ${url}`)) add(m, url, false);
      }
    }
    // The CORS preflight (@fastify/cors registers OPTIONS * before the route list is observed) on every path.
    for (const url of new Set(routes.map((r) => r.url))) add('OPTIONS', url, true);
    return routes;
  }

  type Json = Record<string, unknown>;

  /**
   * Values that pass a route's own JSON schema (as the OpenAPI document has it: ours and Better Auth's), with hostile
   * contents: any code point including NUL, lengths at the limits, extreme numbers. They get past validation into the
   * handlers, where junk alone would mostly stop at a 400.
   */
  const fromSchemaMemo = new WeakMap<object, fc.Arbitrary<unknown>>();
  function fromSchema(schema: unknown, doc: Json, depth = 0): fc.Arbitrary<unknown> {
    if (!schema || typeof schema !== 'object' || depth > 4) return fc.jsonValue({ maxDepth: 2 });
    const known = fromSchemaMemo.get(schema);
    if (known) return known;
    const arbitrary = schemaArbitrary(schema as Json, doc, depth);
    fromSchemaMemo.set(schema, arbitrary);
    return arbitrary;
  }
  function schemaArbitrary(sc: Json, doc: Json, depth: number): fc.Arbitrary<unknown> {
    if (typeof sc.$ref === 'string') {
      const name = sc.$ref.split('/').pop() as string;
      return fromSchema((doc.components as { schemas?: Json })?.schemas?.[name], doc, depth + 1);
    }
    if ('const' in sc) return fc.constant(sc.const);
    if (Array.isArray(sc.enum) && sc.enum.length > 0) return fc.constantFrom(...sc.enum);
    const alternatives = (sc.anyOf ?? sc.oneOf) as unknown[] | undefined;
    if (Array.isArray(alternatives) && alternatives.length > 0) {
      return fc.oneof(...alternatives.map((a) => fromSchema(a, doc, depth + 1)));
    }
    if (Array.isArray(sc.allOf)) return fromSchema(Object.assign({}, ...(sc.allOf as Json[])), doc, depth + 1);
    const type = Array.isArray(sc.type) ? sc.type[0] : (sc.type ?? (sc.properties ? 'object' : undefined));
    const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
    switch (type) {
      case 'string': {
        const min = num(sc.minLength) ?? 0;
        const max = Math.max(min, Math.min(num(sc.maxLength) ?? 300, 300));
        if (sc.format === 'email') return fc.emailAddress();
        if (typeof sc.pattern === 'string') {
          try {
            // Not filtered by length: a short match of a long minimum would take fast-check forever to find.
            return fc.stringMatching(new RegExp(sc.pattern));
          } catch {}
        }
        return fc.oneof(
          fc.string({ minLength: min, maxLength: max }),
          fc.string({ unit: 'binary', minLength: min, maxLength: max }),
          fc.constant('\u0000'.padEnd(max, 'x')),
        );
      }
      case 'integer': {
        const exclusive = num(sc.exclusiveMinimum);
        const min = Math.max(num(sc.minimum) ?? (exclusive !== undefined ? exclusive + 1 : -(2 ** 40)), -(2 ** 40));
        const max = Math.max(min, Math.min(num(sc.maximum) ?? 2 ** 40, 2 ** 40));
        return fc.oneof(fc.integer({ min, max }), fc.constantFrom(min, max));
      }
      case 'number':
        return fc.double({ noNaN: true, noDefaultInfinity: true, min: num(sc.minimum), max: num(sc.maximum) });
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      case 'array': {
        const min = num(sc.minItems) ?? 0;
        return fc.array(fromSchema(sc.items, doc, depth + 1), {
          minLength: min,
          maxLength: Math.max(min, Math.min(num(sc.maxItems) ?? 4, 4)),
        });
      }
      case 'object': {
        const props = (sc.properties ?? {}) as Record<string, unknown>;
        const keys = Object.keys(props);
        if (keys.length === 0) return fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 }));
        const required = ((sc.required ?? []) as string[]).filter((k) => keys.includes(k));
        return fc.record(Object.fromEntries(keys.map((k) => [k, valueFor(k, props[k], doc, depth + 1)])), {
          requiredKeys: required,
        });
      }
      default:
        return fc.jsonValue({ maxDepth: 2 });
    }
  }

  /**
   * Redirect targets (callbackURL, redirectTo, ...) are URLs or paths, trusted or not. Not arbitrary text: under
   * NODE_ENV=test Better Auth skips its origin check, which in production refuses a malformed target with 403, and its
   * redirect then throws "Invalid URL" (500) on text no production request would get past that check.
   */
  const redirectTarget = fc.oneof(
    fc.webUrl(),
    fc.webPath().map((p) => `/${p.replace(/^\/+/, '')}`),
    fc.constantFrom('http://localhost:3000/ok', 'https://evil.example/', '/'),
  );
  function valueFor(key: string, schema: unknown, doc: Json, depth: number): fc.Arbitrary<unknown> {
    return /(?:URL|redirectTo)$/.test(key) ? redirectTarget : fromSchema(schema, doc, depth);
  }

  /** The OpenAPI operation of a route (HEAD is documented as its GET). */
  function operationOf(route: Route, doc: Json): Json | undefined {
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{*}');
    const method = route.method === 'HEAD' ? 'get' : route.method.toLowerCase();
    return (doc.paths as Record<string, Record<string, Json>>)[path]?.[method];
  }

  /** A query string that passes the operation's declared query parameters. */
  function schemaQuery(op: Json | undefined, doc: Json): fc.Arbitrary<string> | null {
    const params = ((op?.parameters ?? []) as Json[]).filter((p) => p.in === 'query' && typeof p.name === 'string');
    if (params.length === 0) return null;
    const record = fc.record(
      Object.fromEntries(params.map((p) => [p.name as string, valueFor(p.name as string, p.schema, doc, 0)])),
      {
        requiredKeys: params.filter((p) => p.required === true).map((p) => p.name as string),
      },
    );
    return record.map((values) => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(values)) q.set(k, typeof v === 'string' ? v : JSON.stringify(v));
      return q.toString();
    });
  }

  const paramValue = fc.oneof(
    fc.string({ maxLength: 40 }).map(encodeURIComponent),
    fc.string({ unit: 'binary', maxLength: 40 }).map(encodeURIComponent),
    fc.constantFrom('telegram', 'google', 'github', '1', '0', '-1', 'null', 'user_1', 'sess_1', '__self__'),
    fc.constantFrom('..%2F..%2Fetc%2Fpasswd', '%00', '%E0%A4%A', '%', '%25', '%2e%2e', 'a%20b', '%F0%9F%98%80'),
    fc.nat({ max: 3000 }).map((n) => 'a'.repeat(n)), // over maxParamLength: 414 URI_TOO_LONG
  );
  const wildcardValue = fc.oneof(
    fc.array(paramValue, { minLength: 0, maxLength: 4 }).map((parts) => parts.join('/')),
    fc.constantFrom('', '../../package.json', '..%2f..%2fpackage.json', 'index.js', 'a/b/c'),
  );

  /** The route's URL with generated path parameters and, sometimes, a query string or a trailing junk segment. */
  const urlFor = (
    route: Route,
    selfId: () => string,
    validQuery: fc.Arbitrary<string> | null,
  ): fc.Arbitrary<{ url: string; exact: boolean }> => {
    const names = [...route.url.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string);
    return fc
      .record({
        params: fc.tuple(...names.map(() => paramValue)),
        wildcard: wildcardValue,
        query: fc.option(
          fc.oneof(
            ...(validQuery ? [{ weight: 3, arbitrary: validQuery }] : []),
            { weight: 1, arbitrary: fc.webQueryParameters() },
            { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map(encodeURI) },
          ),
          { nil: undefined },
        ),
        suffix: fc.option(fc.constantFrom('/', '//', '/x', '%2F', '?', '#x', ';x'), { nil: undefined, freq: 8 }),
      })
      .map(({ params, wildcard, query, suffix }) => {
        let url = route.url;
        names.forEach((name, i) => {
          const v = params[i] === '__self__' ? selfId() : (params[i] as string);
          url = url.replace(`:${name}`, v);
        });
        url = url.replace(/\*$/, wildcard);
        if (suffix !== undefined) url += suffix;
        if (query !== undefined) url += `?${query}`;
        return { url, exact: suffix === undefined };
      });
  };

  const authorization = fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    // A live session (a user's or an admin's) half of the time, so requests get past the guards into the handlers.
    { weight: 5, arbitrary: fc.constantFrom('__user__', '__admin__') },
    { weight: 1, arbitrary: forgedToken().map((j) => `Bearer ${j}`) },
    { weight: 1, arbitrary: fc.string().map((s) => `Basic ${s}`) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  );
  const contentType = fc.constantFrom(
    undefined,
    'application/json',
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
        token: forgedToken(),
        code: fc.oneof(fc.string(), fc.stringMatching(/^\d{6}$/), fc.jsonValue()),
        credential: fc.oneof(fc.jsonValue(), fc.record({ id: fc.string(), response: fc.jsonValue() })),
        newPassword: fc.string(),
        currentPassword: fc.string(),
        sessionToken: fc.string(),
        callbackURL: fc.oneof(fc.webUrl(), fc.string()),
        id: fc.oneof(fc.string(), fc.jsonValue()),
        license: fc.oneof(fc.constantFrom('free', 'pro', 'enterprise', '__proto__'), fc.jsonValue()),
        role: fc.oneof(fc.constantFrom('admin', 'user'), fc.jsonValue()),
        ips: fc.oneof(fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string())), fc.jsonValue()),
        update_id: fc.oneof(fc.integer(), fc.jsonValue()),
        hash: fc.string(),
        auth_date: fc.oneof(fc.integer(), fc.string()),
      },
      { requiredKeys: [] },
    ),
    fc.constant({ __proto__: { admin: true }, constructor: { prototype: { polluted: true } } }),
    fc.constant(JSON.parse('{"__proto__":{"polluted":true},"email":"a@example.com","password":"SecurePassword123!"}')),
  );
  const body = fc.oneof(
    fc.constant(undefined),
    hostileObject.map((v) => JSON.stringify(v) ?? 'null'),
    hostileObject.map((v) => JSON.stringify(v) ?? 'null'),
    fc.string({ unit: 'binary', maxLength: 500 }),
    fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a)),
    fc.nat({ max: 200 }).map((n) => `${'['.repeat(n * 50)}${']'.repeat(n * 50)}`), // deep nesting
    fc.constant(`{"email":"${'a'.repeat(70_000)}"}`), // over body_limit
    fc.constant('{"email": "a@example.com", "password": '), // truncated
  );
  const headers = fc.record({
    authorization,
    cookie: fc.option(
      fc.oneof(
        fc.string().map((s) => `better-auth.session_token=${encodeURIComponent(s)}`),
        fc.string({ unit: 'binary', maxLength: 100 }),
      ),
      { nil: undefined },
    ),
    origin: fc.option(fc.oneof(fc.webUrl(), fc.string(), fc.constant('http://localhost:3000')), { nil: undefined }),
    forwarded: fc.option(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()), { nil: undefined }),
    twoFactor: fc.option(fc.oneof(fc.stringMatching(/^\d{6}$/), fc.string()), { nil: undefined }),
    preflight: fc.option(fc.constantFrom('POST', 'GET', 'DELETE', 'X', ''), { nil: undefined }),
    secret: fc.option(fc.oneof(fc.constant(WEBHOOK_SECRET), fc.string()), { nil: undefined }),
  });

  /** A signed-in user and an admin for '__user__' / '__admin__', recreated when a fuzzed request ended them. */
  const principals = { user: { token: '', userId: '' }, admin: { token: '', userId: '' } };
  async function ensurePrincipals(): Promise<void> {
    for (const role of ['user', 'admin'] as const) {
      const current = principals[role];
      if (current.token && (await t.app.authenticator.authenticateToken(current.token, 'rest'))) continue;
      const created = await registerUser(t.app);
      if (role === 'admin') await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [created.userId]);
      principals[role] = { token: created.token, userId: created.userId };
    }
  }

  it(`every route, every method (about ${RUNS} generated requests): no 5xx, our errors catalogued`, async () => {
    const routes = await allRoutes();
    const doc = (await t.app.openapiDocument()) as unknown as Json;
    // The collection found the app's routes, ours and Better Auth's, the channels' and the mount itself.
    const keys = new Set(routes.map((r) => `${r.method} ${r.url}`));
    for (const expected of [
      'POST /auth/register',
      'GET /auth/session',
      'DELETE /auth/passkeys/:id',
      'PUT /admin/users/:id/license',
      'POST /telegram/webhook',
      'GET /ws/chat',
      'POST /api/auth/*',
      'POST /api/auth/sign-in/email',
      'GET /api/auth/get-session',
      'OPTIONS /auth/login',
    ]) {
      expect(keys, expected).toContain(expected);
    }
    expect(routes.length).toBeGreaterThan(150);

    const perRoute = Math.max(PER_ROUTE_MIN, Math.round(RUNS / routes.length));
    const failures: string[] = [];
    /** Routes that answered at least once with a success: the generated input reaches handlers, not only guards. */
    const succeeded = new Set<string>();
    for (const route of routes) {
      await ensurePrincipals();
      const op = operationOf(route, doc);
      const bodySchema = (op?.requestBody as { content?: Record<string, { schema?: unknown }> } | undefined)?.content?.[
        'application/json'
      ]?.schema;
      const junk = fc.record({ body, contentType });
      const payload = bodySchema
        ? fc.oneof(
            {
              weight: 2,
              arbitrary: fromSchema(bodySchema, doc).map((v) => ({
                body: JSON.stringify(v) as string | Buffer | undefined,
                contentType: 'application/json' as string | undefined,
              })),
            },
            { weight: 1, arbitrary: junk },
          )
        : junk;
      const request = fc.record({
        target: urlFor(route, () => principals.user.userId, schemaQuery(op, doc)),
        headers,
        payload,
      });
      await fc
        .assert(
          fc.asyncProperty(request, async (r) => {
            const { url } = r.target;
            const h: Record<string, string> = {};
            const auth =
              r.headers.authorization === '__user__'
                ? `Bearer ${principals.user.token}`
                : r.headers.authorization === '__admin__'
                  ? `Bearer ${principals.admin.token}`
                  : r.headers.authorization;
            const set = (name: string, value: string | undefined) => {
              if (value !== undefined && legalHeader(value)) h[name] = value;
            };
            set('authorization', auth);
            set('content-type', r.payload.contentType);
            set('cookie', r.headers.cookie);
            set('origin', r.headers.origin);
            set('x-forwarded-for', r.headers.forwarded);
            set('x-2fa-code', r.headers.twoFactor);
            set('x-telegram-bot-api-secret-token', r.headers.secret);
            if (route.method === 'OPTIONS') set('access-control-request-method', r.headers.preflight);
            const withBody = !['GET', 'HEAD', 'OPTIONS'].includes(route.method) && r.payload.body !== undefined;
            const res = await t.app.inject({
              method: route.method as 'GET',
              url,
              headers: h,
              ...(withBody ? { payload: r.payload.body } : {}),
            });
            const where = `${res.statusCode} ${route.method} ${url.slice(0, 120)}`;
            if (res.statusCode < 400) succeeded.add(`${route.method} ${route.url}`);
            if (res.statusCode >= 500) {
              failures.push(`${where} ${res.body.slice(0, 200)}`);
              return false;
            }
            // Our routes answer every error with the envelope and a catalogued code (HEAD has no body; a junk suffix
            // under /api/auth/ lands on Better Auth's mount, which has its own error shape).
            const ownRoute = route.ours && route.method !== 'HEAD' && (r.target.exact || !url.startsWith('/api/auth/'));
            if (ownRoute && res.statusCode >= 400) {
              let code: unknown;
              try {
                const json = res.json() as { success?: unknown; error?: { code?: unknown } };
                code = json.success === false ? json.error?.code : undefined;
              } catch {
                code = undefined;
              }
              if (typeof code !== 'string' || !CATALOGUED.has(code)) {
                failures.push(`${where} not a catalogued error: ${res.body.slice(0, 200)}`);
                return false;
              }
              if (ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status !== res.statusCode) {
                failures.push(
                  `${where} ${code} has status ${ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status}`,
                );
                return false;
              }
            }
            return true;
          }),
          { numRuns: perRoute, interruptAfterTimeLimit: 60_000, endOnFailure: true },
        )
        .catch((err: Error) => {
          // The counterexample was already recorded by the property; keep the seed to replay it.
          failures.push(`${route.method} ${route.url}: ${err.message.split('\n')[1]?.slice(0, 120)}`);
        });
    }
    expect(failures).toEqual([]);
    expect(succeeded.size).toBeGreaterThan(routes.length / 3);
    // The gateway still works.
    expect((await t.app.inject({ method: 'GET', url: '/auth/health' })).statusCode).toBe(200);
  }, 180_000);

  // --- WebSocket ------------------------------------------------------------------------------------------------

  type Frame = { type: string; [k: string]: unknown };
  type Sent =
    | { kind: 'text'; text: string }
    | { kind: 'binary'; bytes: Uint8Array }
    | { kind: 'oversized'; binary: boolean }
    | { kind: 'badUtf8'; bytes: Uint8Array };

  /** A socket with its received frames, and its close. */
  function open(url: string, headers: Record<string, string> = {}) {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false, maxPayload: 10 * 2 ** 20 });
    const frames: Frame[] = [];
    let waiting: (() => void) | null = null;
    ws.on('message', (data, isBinary) => {
      frames.push(isBinary ? { type: '__binary__' } : (JSON.parse(data.toString()) as Frame));
      waiting?.();
    });
    let closeInfo: { code: number; reason: string } | null = null;
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.on('close', (code, reason) => {
        closeInfo = { code, reason: reason.toString() };
        waiting?.();
        resolve(closeInfo);
      }),
    );
    ws.on('error', () => {});
    const opened = new Promise<{ ok: true } | { ok: false; status: number; body: string }>((resolve) => {
      ws.on('open', () => resolve({ ok: true }));
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 0, body: text }));
      });
      ws.on('error', (err) => resolve({ ok: false, status: 0, body: err.message }));
    });
    /** The next frame, or null once the socket is closed with nothing more to read. */
    const next = async (): Promise<Frame | null> => {
      for (;;) {
        const f = frames.shift();
        if (f) return f;
        if (closeInfo) return null;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5000);
          waiting = () => {
            clearTimeout(timer);
            waiting = null;
            resolve();
          };
        });
        if (!frames.length && !closeInfo) throw new Error('no frame and no close within 5 s (hang)');
      }
    };
    const send = (s: Sent) => {
      if (s.kind === 'text') ws.send(s.text);
      else if (s.kind === 'binary') ws.send(s.bytes, { binary: true });
      else if (s.kind === 'badUtf8') ws.send(s.bytes, { binary: false });
      else ws.send(Buffer.alloc(MAX_FRAME + 1, 0x61), { binary: s.binary });
    };
    return { ws, opened, closed, next, send };
  }

  const textFrame = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'),
    fc.constantFrom('{', '{"type":', 'null', '[]', '""', '{"type":null}', '{"type":1}', '{}', '\u0000'),
    fc
      .record(
        {
          type: fc.oneof(
            fc.constantFrom('auth', 'ping', 'message', 'pong', 'reply', 'AUTH', '__proto__', ''),
            fc.string(),
          ),
          token: fc.oneof(forgedToken(), fc.jsonValue()),
          id: fc.oneof(fc.string({ maxLength: 140 }), fc.jsonValue(), fc.constant('x'.repeat(129))),
          text: fc.oneof(fc.string({ maxLength: 300 }), fc.constantFrom('', '   ', '\n'), fc.jsonValue()),
        },
        { requiredKeys: ['type'] },
      )
      .map((v) => JSON.stringify(v)),
    fc
      .record({ id: fc.string({ minLength: 1, maxLength: 20 }), text: fc.string({ minLength: 1 }) })
      .map((m) => JSON.stringify({ type: 'message', ...m })),
  );
  const sent: fc.Arbitrary<Sent> = fc.oneof(
    { weight: 8, arbitrary: textFrame.map((text): Sent => ({ kind: 'text', text })) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes): Sent => ({ kind: 'binary', bytes })) },
    { weight: 1, arbitrary: fc.boolean().map((binary): Sent => ({ kind: 'oversized', binary })) },
    {
      weight: 1,
      arbitrary: fc
        .uint8Array({ maxLength: 40 })
        .map((bytes): Sent => ({ kind: 'badUtf8', bytes: Uint8Array.from([...bytes, 0xc3, 0x28, 0xff]) })),
    },
  );

  type Expected =
    | { frame: 'error' | 'auth_error'; code: string; close?: number }
    | { frame: 'pong' }
    | { frame: 'reply'; id: string }
    | { close: number };

  /** What the README says the server answers to a frame, given whether the socket is authenticated. */
  function expected(s: Sent, authenticated: boolean): Expected {
    if (s.kind === 'oversized') return { close: CloseCode.TOO_BIG };
    if (s.kind === 'badUtf8') return { close: CloseCode.INVALID_PAYLOAD };
    let frame: Frame | null = null;
    if (s.kind === 'text') {
      try {
        const v = JSON.parse(s.text) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as Frame).type === 'string')
          frame = v as Frame;
      } catch {}
    }
    if (!authenticated) {
      if (frame?.type !== 'auth') return { frame: 'auth_error', code: 'AUTH_REQUIRED', close: CloseCode.AUTH_FAILED };
      // Every token the generator makes is forged (or not a string at all).
      return { frame: 'auth_error', code: 'INVALID_TOKEN', close: CloseCode.AUTH_FAILED };
    }
    if (s.kind === 'binary') return { frame: 'error', code: 'BINARY_NOT_SUPPORTED' };
    if (!frame) return { frame: 'error', code: 'MALFORMED_JSON' };
    switch (frame.type) {
      case 'ping':
        return { frame: 'pong' };
      case 'auth':
        return { frame: 'error', code: 'ALREADY_AUTHENTICATED' };
      case 'message': {
        const { id, text } = frame;
        if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH)
          return { frame: 'error', code: 'INVALID_MESSAGE' };
        if (typeof text !== 'string' || text.trim().length === 0) return { frame: 'error', code: 'INVALID_MESSAGE' };
        return { frame: 'reply', id };
      }
      default:
        return { frame: 'error', code: 'UNKNOWN_TYPE' };
    }
  }

  it(`/ws/chat: ${WS_RUNS} sockets of generated frames before and after authentication get the documented answers`, async () => {
    const base = `${await listen(t.app)}/ws/chat`;
    const user = await registerUser(t.app);
    const scenario = fc.record({
      auth: fc.constantFrom('none', 'frame', 'header', 'forged-header'),
      forged: forgedToken(),
      frames: fc.array(sent, { minLength: 1, maxLength: 6 }),
    });
    const problems: string[] = [];
    await fc
      .assert(
        fc.asyncProperty(scenario, async (sc) => {
          const fail = (msg: string) => {
            problems.push(`${sc.auth} ${JSON.stringify(sc.frames).slice(0, 300)}: ${msg}`);
            return false;
          };
          const headers: Record<string, string> =
            sc.auth === 'header'
              ? { authorization: `Bearer ${user.token}` }
              : sc.auth === 'forged-header'
                ? { authorization: legalHeader(sc.forged) ? `Bearer ${sc.forged}` : 'Bearer x' }
                : {};
          const c = open(base, headers);
          const opened = await c.opened;
          if (sc.auth === 'forged-header') {
            // Refused before upgrading: HTTP 401 INVALID_TOKEN, no socket.
            if (opened.ok) {
              c.ws.terminate();
              return fail('a forged bearer header was upgraded');
            }
            if (opened.status !== 401 || JSON.parse(opened.body).error?.code !== 'INVALID_TOKEN') {
              return fail(`forged header: ${opened.status} ${opened.body.slice(0, 200)}`);
            }
            return true;
          }
          if (!opened.ok) return fail(`upgrade refused: ${opened.status} ${opened.body.slice(0, 200)}`);
          try {
            let authenticated = false;
            if (sc.auth === 'header') {
              const ok = await c.next();
              if (ok?.type !== 'auth_ok') return fail(`expected auth_ok, got ${JSON.stringify(ok)}`);
              authenticated = true;
            } else if (sc.auth === 'frame') {
              c.send({ kind: 'text', text: JSON.stringify({ type: 'auth', token: user.token }) });
              const ok = await c.next();
              if (ok?.type !== 'auth_ok') return fail(`expected auth_ok, got ${JSON.stringify(ok)}`);
              authenticated = true;
            }
            for (const s of sc.frames) {
              const want = expected(s, authenticated);
              c.send(s);
              if ('frame' in want) {
                const got = await c.next();
                if (got?.type !== want.frame)
                  return fail(`expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
                if (want.frame === 'reply') {
                  // One or more chunks, then reply_end; or RATE_LIMITED for this id.
                  let f: Frame | null = got;
                  while (f?.type === 'reply' && f.id === want.id) f = await c.next();
                  if (f?.type !== 'reply_end' || f.id !== want.id) return fail(`reply ended with ${JSON.stringify(f)}`);
                  continue;
                }
                if ('code' in want && got.code !== want.code) return fail(`expected ${want.code}, got ${got.code}`);
                if ('close' in want && want.close !== undefined) {
                  const closed = await c.closed;
                  if (closed.code !== want.close || closed.reason !== want.code) {
                    return fail(`expected close ${want.close} ${want.code}, got ${closed.code} ${closed.reason}`);
                  }
                  return true;
                }
              } else {
                const got = await c.next();
                if (got !== null) return fail(`expected close ${want.close}, got frame ${JSON.stringify(got)}`);
                const closed = await c.closed;
                if (closed.code !== want.close) return fail(`expected close ${want.close}, got ${closed.code}`);
                return true;
              }
            }
            // Still open and still answering.
            c.send({ kind: 'text', text: '{"type":"ping"}' });
            const pong = await c.next();
            if (authenticated && pong?.type !== 'pong') return fail(`final ping: ${JSON.stringify(pong)}`);
            return true;
          } finally {
            c.ws.close();
            await c.closed;
          }
        }),
        { numRuns: WS_RUNS, interruptAfterTimeLimit: 60_000, endOnFailure: true },
      )
      .catch((err: Error) => problems.push(err.message.split('\n').slice(0, 3).join(' | ').slice(0, 600)));
    expect(problems).toEqual([]);
    // No socket left behind on the server.
    await expect.poll(() => t.app.chatSockets.size).toBe(0);
    expect(t.app.chatSockets.unauthenticated).toBe(0);
  }, 120_000);

  // --- Telegram -------------------------------------------------------------------------------------------------

  it(`Telegram webhook: ${TELEGRAM_RUNS} generated updates, 200 / 400 / 401 as documented, no update fails the bot`, async () => {
    // One linked account, so updates from it reach the chat path too.
    const linked = await registerUser(t.app);
    const LINKED_ID = 5_550_001;
    await t.db.query(
      `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', $2)`,
      [linked.userId, String(LINKED_ID)],
    );
    const userId = fc.oneof(
      fc.constant(LINKED_ID),
      fc.integer({ min: 1, max: 2 ** 40 }),
      fc.constantFrom(0, -1, Number.MAX_SAFE_INTEGER),
    );
    const user = userId.chain((id) =>
      fc.record({
        id: fc.constant(id),
        is_bot: fc.boolean(),
        first_name: fc.string({ unit: 'binary', maxLength: 64 }),
        username: fc.option(fc.string({ maxLength: 32 }), { nil: undefined }),
        language_code: fc.option(fc.constantFrom('en', 'ru', 'xx', ''), { nil: undefined }),
      }),
    );
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.constantFrom('/start', '/link', '/whoami', '/unlink', '/help', '/', '/start@test_gateway_bot', '/link    '),
      fc
        .tuple(fc.constantFrom('/start ', '/link ', '/whoami ', '/unlink '), fc.oneof(fc.string(), fc.base64String()))
        .map(([c, a]) => c + a),
      fc.constant('x'.repeat(5000)),
    );
    const message = fc.record(
      {
        message_id: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        date: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        from: user,
        chat_type: fc.constantFrom('private', 'private', 'private', 'group', 'supergroup', 'channel'),
        text: fc.option(text, { nil: undefined, freq: 8 }),
        entities: fc.option(
          fc.array(
            fc.record({
              type: fc.constantFrom('bot_command', 'mention', 'bold', 'url', 'x'),
              offset: fc.integer({ min: -5, max: 400 }),
              length: fc.integer({ min: -5, max: 400 }),
            }),
            { maxLength: 3 },
          ),
          { nil: undefined },
        ),
        sticker: fc.option(fc.record({ file_id: fc.string() }), { nil: undefined, freq: 6 }),
      },
      { requiredKeys: ['message_id', 'date', 'from', 'chat_type'] },
    );
    /** Shaped as Telegram sends updates (every required field of the right type), with hostile contents. */
    const wellFormed = fc
      .record({
        update_id: fc.nat({ max: 2 ** 31 - 1 }),
        kind: fc.constantFrom('message', 'message', 'message', 'edited_message', 'channel_post', 'callback_query'),
        message,
      })
      .map(({ update_id, kind, message: m }) => {
        const { chat_type, from, ...rest } = m;
        const chat =
          chat_type === 'private'
            ? { id: from.id, type: 'private', first_name: from.first_name }
            : { id: -1_000_000 - from.id, type: chat_type, title: 'group' };
        const msg = {
          ...rest,
          ...(rest.text === undefined && rest.sticker === undefined ? { text: 'hi' } : {}),
          chat,
          ...(kind === 'channel_post' ? {} : { from }),
        };
        if (kind === 'callback_query') {
          return { update_id, callback_query: { id: String(update_id), from, chat_instance: '1', data: rest.text } };
        }
        return { update_id, [kind]: msg };
      });
    /** Not what Telegram sends: junk JSON, wrong field types, missing fields. */
    const malformed = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.record({ update_id: fc.oneof(fc.integer(), fc.jsonValue()), message: fc.jsonValue() }),
      fc.record({
        update_id: fc.nat(),
        message: fc.record(
          {
            message_id: fc.jsonValue(),
            date: fc.jsonValue(),
            from: fc.oneof(fc.jsonValue(), fc.record({ id: fc.jsonValue() })),
            chat: fc.oneof(fc.jsonValue(), fc.record({ id: fc.jsonValue(), type: fc.jsonValue() })),
            text: fc.jsonValue(),
            entities: fc.jsonValue(),
          },
          { requiredKeys: [] },
        ),
      }),
    );
    const delivery = fc.record({
      secret: fc.oneof(
        { weight: 8, arbitrary: fc.constant<string | undefined>(WEBHOOK_SECRET) },
        { weight: 1, arbitrary: fc.constant<string | undefined>(undefined) },
        { weight: 1, arbitrary: fc.string({ maxLength: 60 }).filter((s) => s !== WEBHOOK_SECRET && legalHeader(s)) },
      ),
      update: fc.oneof(
        { weight: 3, arbitrary: wellFormed.map((u) => ({ shaped: true, body: JSON.stringify(u) })) },
        { weight: 1, arbitrary: malformed.map((u) => ({ shaped: false, body: JSON.stringify(u) ?? 'null' })) },
        {
          weight: 1,
          arbitrary: fc
            .oneof(
              fc.string({ unit: 'binary', maxLength: 200 }),
              fc.constantFrom('{', '', `{"update_id":1,"x":"${'a'.repeat(70_000)}"}`),
            )
            .map((b) => ({ shaped: false, body: b })),
        },
      ),
    });

    const problems: string[] = [];
    await fc
      .assert(
        fc.asyncProperty(delivery, async (d) => {
          const logsBefore = t.logs.lines.length;
          const res = await t.app.inject({
            method: 'POST',
            url: '/telegram/webhook',
            headers: {
              'content-type': 'application/json',
              ...(d.secret === undefined ? {} : { 'x-telegram-bot-api-secret-token': d.secret }),
            },
            payload: d.update.body,
          });
          const where = `${res.statusCode} ${d.update.body.slice(0, 200)}`;
          let parsed: unknown;
          try {
            parsed = JSON.parse(d.update.body);
          } catch {
            parsed = undefined;
          }
          const validUpdate =
            parsed !== null &&
            typeof parsed === 'object' &&
            !Array.isArray(parsed) &&
            Number.isInteger((parsed as { update_id?: unknown }).update_id) &&
            ((parsed as { update_id: number }).update_id ?? -1) >= 0;
          const tooLarge = Buffer.byteLength(d.update.body) > t.config.server.body_limit;
          const want =
            d.secret !== WEBHOOK_SECRET
              ? 401
              : tooLarge
                ? 413
                : parsed === undefined || poisoned(d.update.body) || !validUpdate
                  ? 400
                  : 200;
          if (res.statusCode !== want) {
            problems.push(`expected ${want}: ${where} ${res.body.slice(0, 200)}`);
            return false;
          }
          if (want === 401 && res.json().error?.code !== 'TELEGRAM_WEBHOOK_SECRET_INVALID') {
            problems.push(`401 without TELEGRAM_WEBHOOK_SECRET_INVALID: ${res.body}`);
            return false;
          }
          // An update shaped as Telegram sends it never makes the bot fail.
          const failure = t.logs.lines.slice(logsBefore).find((l) => l.includes('telegram update failed'));
          if (d.update.shaped && want === 200 && failure) {
            problems.push(`update failed: ${where} ${failure.slice(0, 300)}`);
            return false;
          }
          return true;
        }),
        { numRuns: TELEGRAM_RUNS, interruptAfterTimeLimit: 60_000, endOnFailure: true },
      )
      .catch((err: Error) => problems.push(err.message.split('\n').slice(0, 3).join(' | ').slice(0, 600)));
    expect(problems).toEqual([]);
    // The bot still links and answers.
    const before = botApi.sentMessages.length;
    const ok = await t.app.inject({
      method: 'POST',
      url: '/telegram/webhook',
      headers: secretHeader,
      payload: {
        update_id: 1,
        message: {
          message_id: 1,
          date: 1,
          from: { id: 5_550_002, is_bot: false, first_name: 'After' },
          chat: { id: 5_550_002, type: 'private', first_name: 'After' },
          text: '/whoami',
          entities: [{ type: 'bot_command', offset: 0, length: 7 }],
        },
      },
    });
    expect(ok.statusCode).toBe(200);
    expect(botApi.sentMessages.slice(before).some((m) => m.chat_id === 5_550_002)).toBe(true);
  }, 120_000);

  it('afterwards: still serving, and memory back near its baseline', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/auth/health' })).statusCode).toBe(200);
    expect(t.app.chatSockets.size).toBe(0);
    // What the test itself kept (captured log lines, the stand-in's record of calls) is not the gateway's memory.
    t.logs.lines.length = 0;
    botApi.sentMessages.length = 0;
    botApi.calls.length = 0;
    collect();
    const growth = process.memoryUsage().heapUsed - baseline;
    expect(growth).toBeLessThan(48 * 2 ** 20);
  });
});
