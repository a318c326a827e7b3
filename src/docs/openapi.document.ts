import { ERROR_CATALOGUE } from '../errors/index.js';

/**
 * Post-processing of the OpenAPI document @fastify/swagger generates from the route schemas: Better Auth's own routes
 * merged in under /api/auth, the WebSocket protocol described, every error response named by its codes, and an example
 * on every request body and response that does not bring its own. Pure functions over plain objects: testable alone.
 */

type Json = Record<string, unknown>;
export interface OpenApiDocument extends Json {
  openapi: string;
  paths: Record<string, Record<string, Json>>;
  components: Json & { schemas?: Record<string, Json>; securitySchemes?: Record<string, Json> };
  tags?: { name: string; description?: string }[];
}

export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/** The Better Auth document as its generator gives it: paths relative to /api/auth. */
export interface ExternalDocument {
  paths: Record<string, Record<string, unknown>>;
  components: { schemas?: Record<string, unknown> };
}

/** Protocol descriptions of WebSocket routes, shown on their GET (upgrade) operation. */
export const WEBSOCKET_DESCRIPTIONS: Record<string, { summary: string; description: string }> = {
  '/ws/chat': {
    summary: 'Chat over WebSocket (upgrade); authenticate with a bearer header or a first auth message',
    description: [
      'Open a WebSocket to this path (`ws://` or `wss://`). Two ways in:',
      '',
      '1. `Authorization: Bearer <token>` on the upgrade request; an invalid token is refused with HTTP 401 before any upgrade.',
      '2. A first message `{"type":"auth","token":"<token>"}`. Success answers `{"type":"auth_ok","userId":"…","license":"pro"}`;',
      '   a wrong or missing token, or any other first message, answers `{"type":"auth_error","code":"…"}` and closes the socket',
      '   with a 4xxx close code.',
      '',
      'After that, JSON messages:',
      '',
      '- `{"type":"message","id":"m1","text":"hello"}` → `{"type":"reply","id":"m1","text":"…"}` chunks, then',
      '  `{"type":"reply_end","id":"m1"}` (the shipped EchoChatService echoes the text);',
      '- `{"type":"ping"}` → `{"type":"pong"}`;',
      '- malformed JSON, unknown types → `{"type":"error","code":"…"}`; frames over the limit close with 1009.',
      '',
      'The socket closes when its session ends (logout, revocation, expiry). Browsers cannot set headers on a WebSocket:',
      'the web console uses the first-message way.',
    ].join('\n'),
  },
};

const BETTER_AUTH_PREFIX = '/api/auth';
const BETTER_AUTH_SCHEMA_PREFIX = 'BetterAuth';

/** Methods Better Auth's generator lists that the gateway refuses, by path below /api/auth: left out of the document. */
const BETTER_AUTH_REFUSED_METHODS: Record<string, readonly string[]> = {
  // Better Auth takes POST here only with session.deferSessionRefresh, which the gateway leaves off: 405.
  '/get-session': ['post'],
};

/**
 * Request examples the gateway accepts, by path below /api/auth and method, where the one built from Better Auth's
 * schema is refused: its image "string" fails the mount's check (an http(s) URL or null, mount.plugin.ts).
 */
const BETTER_AUTH_REQUEST_EXAMPLES: Record<string, Record<string, Json>> = {
  '/update-user': { post: { name: 'Jane Doe', image: 'https://example.com/avatar.png' } },
};

/** Everything the post-processing does, in order. */
export function finishDocument(
  doc: OpenApiDocument,
  options: { betterAuth?: ExternalDocument | null; websocketRoutes?: Iterable<string> },
): OpenApiDocument {
  if (options.betterAuth) mergeBetterAuth(doc, options.betterAuth);
  for (const url of options.websocketRoutes ?? []) describeWebSocket(doc, url);
  for (const [, method, op] of operations(doc)) {
    describeErrors(op);
    addExamples(op, doc, method);
  }
  return doc;
}

/** [path, method, operation] of every operation in the document. */
export function operations(doc: OpenApiDocument): [string, string, Json][] {
  const out: [string, string, Json][] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (op && typeof op === 'object') out.push([path, method, op]);
    }
  }
  return out;
}

/**
 * Better Auth's paths under /api/auth, its component schemas renamed (BetterAuthUser, ...) so they cannot collide with
 * ours, its security mapped onto ours (our bearer JWT is accepted on /api/auth/* too), and a summary on each operation
 * (its generator only gives descriptions). Methods the gateway refuses are left out, and request examples it would
 * refuse are replaced: the document promises only what the gateway answers.
 */
export function mergeBetterAuth(doc: OpenApiDocument, external: ExternalDocument): void {
  const rename = (name: string) => `${BETTER_AUTH_SCHEMA_PREFIX}${name}`;
  const renamed = rewriteRefs(external, rename) as ExternalDocument;
  doc.components.schemas ??= {};
  for (const [name, schema] of Object.entries(renamed.components.schemas ?? {})) {
    doc.components.schemas[rename(name)] = schema as Json;
  }
  for (const [path, item] of Object.entries(renamed.paths)) {
    const fullPath = `${BETTER_AUTH_PREFIX}${path}`;
    if (doc.paths[fullPath]) continue; // one of ours shadows it
    const target: Record<string, Json> = {};
    for (const method of METHODS) {
      const op = item[method] as Json | undefined;
      if (!op || BETTER_AUTH_REFUSED_METHODS[path]?.includes(method)) continue;
      const example = BETTER_AUTH_REQUEST_EXAMPLES[path]?.[method];
      if (example) setRequestExample(op, example);
      const description = typeof op.description === 'string' ? op.description : '';
      target[method] = {
        ...op,
        summary: summaryOf(description) || `${method.toUpperCase()} ${fullPath}`,
        tags: ['better-auth'],
        security: [{ bearer: [] }, { cookie: [] }, {}],
        operationId: op.operationId ? `betterAuth_${op.operationId}` : undefined,
      };
      if (target[method].operationId === undefined) delete target[method].operationId;
    }
    doc.paths[fullPath] = target;
  }
  doc.tags = [
    ...(doc.tags ?? []).filter((t) => t.name !== 'better-auth'),
    {
      name: 'better-auth',
      description:
        "Better Auth's own routes, mounted at /api/auth/*. They accept this gateway's bearer token and Better Auth's " +
        'session cookie; successful sign-ins also return the gateway token in the X-Auth-Token header.',
    },
  ];
}

/**
 * Sets the example of an operation's JSON request body (addExamples then leaves it alone). An operation that no longer
 * has one keeps what its generator gave (the OpenAPI tests send the example, so they notice).
 */
function setRequestExample(op: Json, example: Json): void {
  const content = (op.requestBody as Json | undefined)?.content as Record<string, Json> | undefined;
  const media = content?.['application/json'];
  if (media) media.example = example;
}

function summaryOf(description: string): string {
  const first = description.split(/(?<=\.)\s|\n/)[0]?.trim() ?? '';
  return first.length > 120 ? `${first.slice(0, 117)}...` : first;
}

function rewriteRefs(value: unknown, rename: (name: string) => string): unknown {
  if (Array.isArray(value)) return value.map((v) => rewriteRefs(v, rename));
  if (value && typeof value === 'object') {
    const out: Json = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] =
        k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')
          ? `#/components/schemas/${rename(v.slice('#/components/schemas/'.length))}`
          : rewriteRefs(v, rename);
    }
    return out;
  }
  return value;
}

/** A WebSocket route's GET operation: its protocol in words, 101 and 401 responses. Added if the route hid itself. */
export function describeWebSocket(doc: OpenApiDocument, url: string): void {
  const known = WEBSOCKET_DESCRIPTIONS[url];
  const path = url.replace(/:(\w+)/g, '{$1}');
  doc.paths[path] ??= {};
  const item = doc.paths[path];
  const op: Json = item.get ?? {};
  item.get = op;
  op.summary ??= known?.summary ?? `WebSocket ${url}`;
  if (known && (typeof op.description !== 'string' || op.description.length === 0)) op.description = known.description;
  op.tags ??= ['websocket'];
  doc.tags ??= [];
  if (!doc.tags.some((t) => t.name === 'websocket')) {
    doc.tags.push({
      name: 'websocket',
      description: 'WebSocket channels (described; open them with a WebSocket client)',
    });
  }
  const responses = (op.responses ?? {}) as Json;
  op.responses = responses;
  responses['101'] ??= { description: 'Switching Protocols: the WebSocket is open; the protocol above applies.' };
  responses['401'] ??= {
    description: 'The bearer token on the upgrade request is invalid (no upgrade).',
    content: { 'application/json': { schema: errorSchema() } },
  };
  responses['426'] ??= {
    description: 'A plain HTTP request without `Upgrade: websocket` (UPGRADE_REQUIRED).',
    content: { 'application/json': { schema: errorSchema() } },
  };
  // Fastify's default 200 has no meaning on an upgrade-only route.
  const ok = responses['200'] as Json | undefined;
  if (ok && ok.description === 'Default Response' && !ok.content) delete responses['200'];
}

function errorSchema(): Json {
  return {
    type: 'object',
    required: ['success', 'error'],
    properties: {
      success: { type: 'boolean', const: false },
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } },
      },
    },
  };
}

/** The catalogue's codes with one status, e.g. 409 -> EMAIL_TAKEN. */
export function codesForStatus(status: number): string[] {
  return Object.entries(ERROR_CATALOGUE)
    .filter(([, v]) => v.status === status)
    .map(([code]) => code);
}

/** Error responses name the codes they carry ("Default Response" says nothing). */
function describeErrors(op: Json): void {
  const responses = (op.responses ?? {}) as Record<string, Json>;
  for (const [status, response] of Object.entries(responses)) {
    const n = Number(status);
    if (!(n >= 400) || !response || typeof response !== 'object') continue;
    const codes = codesForStatus(n);
    if (codes.length === 0) continue;
    const list = codes.map((c) => `\`${c}\``).join(', ');
    const generic = !response.description || response.description === 'Default Response';
    response.description = generic
      ? `Error. \`error.code\` is one of the gateway's codes with this status: ${list}.`
      : `${response.description} (gateway codes with this status: ${list})`;
  }
}

/** An example on every JSON request body and response that has a schema and no example of its own. */
function addExamples(op: Json, doc: OpenApiDocument, _method: string): void {
  const body = op.requestBody as Json | undefined;
  if (body) addMediaExample(body, doc, null);
  for (const [status, response] of Object.entries((op.responses ?? {}) as Record<string, Json>)) {
    if (response && typeof response === 'object') addMediaExample(response, doc, Number(status));
  }
}

function addMediaExample(holder: Json, doc: OpenApiDocument, status: number | null): void {
  const content = holder.content as Record<string, Json> | undefined;
  if (!content) return;
  for (const [type, media] of Object.entries(content)) {
    if (!type.includes('json') || !media || 'example' in media || 'examples' in media) continue;
    let example = sampleOf(media.schema, doc, 0);
    if (status !== null && status >= 400 && isErrorShape(example)) {
      const code = codesForStatus(status)[0];
      if (code) {
        example = {
          success: false,
          error: { code, message: ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].message },
        };
      }
    }
    if (example !== undefined) media.example = example;
  }
}

function isErrorShape(value: unknown): boolean {
  return !!value && typeof value === 'object' && 'error' in value && 'success' in value;
}

const FORMAT_SAMPLES: Record<string, string> = {
  'date-time': '2026-01-01T12:00:00.000Z',
  date: '2026-01-01',
  email: 'user@example.com',
  uri: 'https://example.com/',
  url: 'https://example.com/',
  uuid: '00000000-0000-4000-8000-000000000000',
};

/** A value that fits a JSON schema: its own examples first, then const/default/enum, then a typed placeholder. */
export function sampleOf(schema: unknown, doc: OpenApiDocument, depth: number): unknown {
  if (!schema || typeof schema !== 'object' || depth > 8) return undefined;
  const s = schema as Json;
  if (typeof s.$ref === 'string') {
    const name = s.$ref.split('/').pop() ?? '';
    return sampleOf(doc.components.schemas?.[name], doc, depth + 1);
  }
  if ('example' in s) return s.example;
  if (Array.isArray(s.examples) && s.examples.length > 0) return s.examples[0];
  if ('const' in s) return s.const;
  if ('default' in s && s.default !== '') return s.default;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  const alternatives = (s.anyOf ?? s.oneOf) as unknown[] | undefined;
  if (Array.isArray(alternatives) && alternatives.length > 0) return sampleOf(alternatives[0], doc, depth + 1);
  if (Array.isArray(s.allOf)) {
    return Object.assign({}, ...s.allOf.map((part) => sampleOf(part, doc, depth + 1) ?? {}));
  }
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  if (type === 'object' || (type === undefined && s.properties)) {
    const out: Json = {};
    for (const [key, value] of Object.entries((s.properties ?? {}) as Json)) {
      const v = sampleOf(value, doc, depth + 1);
      if (v !== undefined) out[key] = v;
    }
    return out;
  }
  if (type === 'array') {
    const item = sampleOf(s.items, doc, depth + 1);
    return item === undefined ? [] : [item];
  }
  if (type === 'string') return FORMAT_SAMPLES[String(s.format)] ?? 'string';
  if (type === 'integer' || type === 'number') return typeof s.minimum === 'number' ? s.minimum : 0;
  if (type === 'boolean') return true;
  if (type === 'null') return null;
  return undefined;
}
