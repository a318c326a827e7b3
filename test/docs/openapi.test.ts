import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  finishDocument,
  METHODS,
  type OpenApiDocument,
  operations,
  WEBSOCKET_DESCRIPTIONS,
} from '../../src/docs/openapi.document.js';
import { createTestApp, REPO_ROOT, registerUser, type TestApp } from '../helpers/test-app.js';

/**
 * The official OpenAPI 3.1 schema (spec.openapis.org/oas/3.1/schema/2022-10-07), as shipped inside
 * @scalar/openapi-validator (a dependency of the Scalar reference); imported by path, its package exports hide it.
 */
async function loadOas31Schema(): Promise<Record<string, unknown>> {
  const url = new URL('node_modules/@scalar/openapi-validator/dist/schemas/v3.1/schema.js', `file://${REPO_ROOT}`);
  return ((await import(url.href)) as { default: Record<string, unknown> }).default;
}

async function oasValidator() {
  const schema = await loadOas31Schema();
  expect(schema.$id).toBe('https://spec.openapis.org/oas/3.1/schema/2022-10-07');
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addFormat('media-range', true); // an RFC 9110 media range, e.g. application/json; not checked further
  return ajv.compile(schema);
}

/** Hidden routes that the document leaves out on purpose, each with its reason. */
const HIDDEN_ON_PURPOSE: [RegExp, string][] = [
  [
    /^\/api\/auth\/\*$/,
    "Better Auth's catch-all mount: its routes come from Better Auth's own generator (checked below)",
  ],
  [/^\/\*?$/, 'the console: static files'],
  [/^\/vendor\//, 'browser libraries for the console'],
  [/^\/docs(\/|$)/, 'the API reference page and its script'],
];

// As @fastify/swagger writes them: /a/:id -> /a/{id}, /a/* -> /a/{*}.
const toOpenApiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}').replaceAll('*', '{*}');

function resolveRef(doc: OpenApiDocument, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/')) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~');
    node = node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return node;
}

function collectRefs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) collectRefs(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else collectRefs(v, out);
    }
  }
  return out;
}

describe('GET /openapi.json', () => {
  let t: TestApp;
  let doc: OpenApiDocument;

  beforeAll(async () => {
    t = await createTestApp();
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    doc = res.json() as OpenApiDocument;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('is a valid OpenAPI 3.1 document (official schema)', async () => {
    const validate = await oasValidator();
    const ok = validate(doc);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
  });

  it('is checked by a validator that does refuse broken documents', async () => {
    const validate = await oasValidator();
    const broken = structuredClone(doc) as Record<string, unknown>;
    delete broken.info;
    expect(validate(broken)).toBe(false);
    const badResponse = structuredClone(doc);
    (badResponse.paths['/auth/login'] as Record<string, unknown>).post = { responses: { 200: { content: 'nope' } } };
    expect(validate(badResponse)).toBe(false);
  });

  it('resolves every $ref', () => {
    const refs = collectRefs(doc);
    expect(refs.length).toBeGreaterThan(0);
    expect(refs.filter((r) => resolveRef(doc, r) === undefined)).toEqual([]);
  });

  it('documents every registered route', () => {
    const routes = t.app.registeredRoutes().filter((r) => r.method !== 'HEAD');
    expect(routes.length).toBeGreaterThan(5);
    const missing: string[] = [];
    const unexplained: string[] = [];
    for (const route of routes) {
      const documented = doc.paths[toOpenApiPath(route.url)]?.[route.method.toLowerCase()];
      if (documented) continue;
      if (route.hidden && !route.websocket) {
        if (!HIDDEN_ON_PURPOSE.some(([re]) => re.test(route.url))) unexplained.push(`${route.method} ${route.url}`);
        continue;
      }
      missing.push(`${route.method} ${route.url}`);
    }
    expect(missing).toEqual([]);
    expect(unexplained).toEqual([]);
  });

  it("merges Better Auth's own routes under /api/auth", () => {
    for (const path of ['/api/auth/sign-in/email', '/api/auth/sign-up/email', '/api/auth/sign-out']) {
      expect(doc.paths[path]?.post, path).toBeDefined();
    }
    expect(doc.paths['/api/auth/get-session']?.get).toBeDefined();
    // Only those the mount serves: the others answer 404.
    for (const path of ['/api/auth/list-sessions', '/api/auth/two-factor/get-totp-uri', '/api/auth/sign-in/social']) {
      expect(doc.paths[path], path).toBeUndefined();
    }
    expect(doc.tags?.map((tag) => tag.name)).toContain('better-auth');
    // Its component schemas are renamed so they cannot collide with ours.
    expect(Object.keys(doc.components.schemas ?? {})).toContain('BetterAuthUser');
    // No route of Better Auth's openAPI plugin is exposed (its reference page loads from a CDN).
    expect(Object.keys(doc.paths).filter((p) => p.includes('open-api') || p.endsWith('/reference'))).toEqual([]);
  });

  // Regression: POST /api/auth/get-session was documented, but the gateway answers it 405
  // (METHOD_NOT_ALLOWED_DEFER_SESSION_REQUIRED: Better Auth's deferSessionRefresh is off).
  it('documents get-session with GET only, the one method the gateway answers', async () => {
    expect(Object.keys(doc.paths['/api/auth/get-session'] ?? {})).toEqual(['get']);
    const { token } = await registerUser(t.app);
    const headers = { authorization: `Bearer ${token}` };
    const get = await t.app.inject({ method: 'GET', url: '/api/auth/get-session', headers });
    expect(get.statusCode).toBe(200);
    const post = await t.app.inject({ method: 'POST', url: '/api/auth/get-session', headers, payload: {} });
    expect(post.statusCode).toBe(405);
  });

  // Regression: update-user's generated example ({"image":"string"}) was refused with 400 VALIDATION_FAILED.
  it('gives update-user a request example the gateway accepts', async () => {
    const body = (doc.paths['/api/auth/update-user']?.post?.requestBody ?? {}) as {
      content?: Record<string, { example?: Record<string, unknown> }>;
    };
    const example = body.content?.['application/json']?.example;
    expect(example).toMatchObject({ image: expect.stringMatching(/^https:\/\//) });
    const { token } = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/update-user',
      headers: { authorization: `Bearer ${token}` },
      payload: example,
    });
    expect(res.statusCode, res.body).toBe(200);
    const session = await t.app.inject({
      method: 'GET',
      url: '/api/auth/get-session',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(session.json()).toMatchObject({ user: example });
  });

  it('gives every operation a summary, responses, error codes and an example', () => {
    const problems: string[] = [];
    for (const [path, method, op] of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      if (typeof op.summary !== 'string' || op.summary.length === 0) problems.push(`${where}: no summary`);
      const responses = (op.responses ?? {}) as Record<string, Record<string, unknown>>;
      if (Object.keys(responses).length === 0) problems.push(`${where}: no responses`);
      let examples = 0;
      const body = op.requestBody as { content?: Record<string, Record<string, unknown>> } | undefined;
      for (const media of Object.values(body?.content ?? {})) {
        if (media.schema && !('example' in media) && !('examples' in media))
          problems.push(`${where}: body without example`);
        else examples++;
      }
      for (const [status, response] of Object.entries(responses)) {
        if (typeof response.description !== 'string') problems.push(`${where} ${status}: no description`);
        const content = (response.content ?? {}) as Record<string, Record<string, unknown>>;
        for (const [type, media] of Object.entries(content)) {
          if (!type.includes('json')) continue;
          if (media.schema && !('example' in media) && !('examples' in media)) {
            problems.push(`${where} ${status}: response without example`);
          } else examples++;
        }
        if (
          !path.startsWith('/api/auth/') &&
          Number(status) >= 400 &&
          !/`[A-Z_]+`/.test(String(response.description))
        ) {
          problems.push(`${where} ${status}: error codes not named`);
        }
      }
      if (!path.startsWith('/api/auth/') && examples === 0 && method !== 'get') problems.push(`${where}: no example`);
    }
    expect(problems).toEqual([]);
  });

  it('names the codes of each error response and shows a matching example', () => {
    const register = doc.paths['/auth/register']?.post as Record<string, Record<string, Record<string, unknown>>>;
    const conflict = register.responses?.['409'] as {
      description: string;
      content: Record<string, { example: unknown }>;
    };
    expect(conflict.description).toContain('`EMAIL_TAKEN`');
    expect(conflict.content['application/json']?.example).toEqual({
      success: false,
      error: { code: 'EMAIL_TAKEN', message: 'An account with this email already exists.' },
    });
    const body = (register.requestBody as { content: Record<string, { example: unknown }> }).content[
      'application/json'
    ];
    expect(body?.example).toMatchObject({ email: 'user@example.com', password: expect.any(String) });
  });

  it('describes the console QR route with an SVG response and a bearer requirement', () => {
    const qr = doc.paths['/console/qr']?.post as Record<string, unknown>;
    expect(qr.security).toEqual([{ bearer: [] }, { cookie: [] }]);
    expect(Object.keys((qr.responses as Record<string, { content?: object }>)['200']?.content ?? {})).toEqual([
      'image/svg+xml',
    ]);
  });
});

describe('finishDocument', () => {
  const base = (): OpenApiDocument => ({
    openapi: '3.1.0',
    info: { title: 't', version: '1' },
    paths: {},
    components: {},
  });

  it('describes a WebSocket route that hid itself, and the result is still valid', async () => {
    const doc = finishDocument(base(), { websocketRoutes: ['/ws/chat'] });
    const op = doc.paths['/ws/chat']?.get as Record<string, unknown>;
    expect(op.summary).toBe(WEBSOCKET_DESCRIPTIONS['/ws/chat']?.summary);
    expect(op.description).toContain('{"type":"auth","token":"<token>"}');
    expect(op.description).toContain('auth_ok');
    expect(Object.keys(op.responses as object)).toEqual(expect.arrayContaining(['101', '401']));
    const validate = await oasValidator();
    expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);
  });

  it("keeps a WebSocket route's own summary and description", () => {
    const doc = base();
    doc.paths['/ws/chat'] = { get: { summary: 'Mine', description: 'Own words', responses: {} } };
    finishDocument(doc, { websocketRoutes: ['/ws/chat'] });
    expect(doc.paths['/ws/chat']?.get).toMatchObject({ summary: 'Mine', description: 'Own words' });
  });

  it('never lets a Better Auth path replace one of ours', () => {
    const doc = base();
    doc.paths['/api/auth/session'] = { get: { summary: 'Ours', responses: { 200: { description: 'ok' } } } };
    finishDocument(doc, {
      betterAuth: {
        paths: { '/session': { get: { description: 'Theirs', responses: {} } }, '/ok': { get: { responses: {} } } },
        components: {},
      },
    });
    expect(doc.paths['/api/auth/session']?.get?.summary).toBe('Ours');
    expect(doc.paths['/api/auth/ok']?.get?.summary).toBe('GET /api/auth/ok');
    for (const method of METHODS)
      expect(doc.paths['/api/auth/ok']?.[method]?.tags ?? ['better-auth']).toEqual(['better-auth']);
  });
});
