import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type ExternalDocument, finishDocument, type OpenApiDocument } from './openapi.document.js';

export interface DocsOptions {
  version: string;
  baseUrl: string;
  /** Better Auth's own document (paths relative to /api/auth), merged into ours; null leaves it out. */
  betterAuthDocument?: () => Promise<ExternalDocument | null>;
}

/** Where Scalar's standalone bundle is served (by its own Fastify plugin, from node_modules; no CDN). */
export const SCALAR_PREFIX = '/docs/scalar';
const SCALAR_SCRIPT = `${SCALAR_PREFIX}/js/scalar.js`;

/**
 * The reference page needs inline styles: Scalar's bundle injects its stylesheet (Tailwind, theme) as <style> elements
 * at run time. Scripts stay strict ('self' only: the bundle and nothing inline); no other origin is contacted.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const escapeAttribute = (s: string) =>
  s.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** The page at /docs: no inline script; Scalar reads its configuration from a JSON data block. */
function docsPage(): string {
  const configuration = {
    url: '/openapi.json',
    withDefaultFonts: false, // the default fonts come from a CDN
    telemetry: false,
    hideClientButton: true,
    persistAuth: false,
    // Scalar's hosted extras (AI agent, MCP generator, deploy/share toolbar) talk to scalar.com: off.
    showDeveloperTools: 'never',
    agent: { disabled: true },
    mcp: { disabled: true },
    metaData: { title: 'Auth gateway API' },
  };
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Auth gateway API reference</title>
  </head>
  <body>
    <script id="api-reference" type="application/json" data-url="/openapi.json" data-configuration="${escapeAttribute(
      JSON.stringify(configuration),
    )}"></script>
    <script src="${SCALAR_SCRIPT}"></script>
  </body>
</html>
`;
}

const setDocsCsp = async (_request: FastifyRequest, reply: FastifyReply) => {
  reply.header('content-security-policy', DOCS_CSP);
};

/**
 * OpenAPI: @fastify/swagger collects every route's schema (dynamic mode; so it must be registered before the routes),
 * GET /openapi.json serves the finished document (Better Auth's routes merged in, see openapi.document.ts), GET /docs an
 * interactive Scalar reference whose assets come from node_modules.
 */
export const docsPlugin = fp<DocsOptions>(
  async (app: FastifyInstance, options) => {
    const websocketRoutes = new Set<string>();
    const registered: RegisteredRoute[] = [];
    app.addHook('onRoute', (route) => {
      const websocket = Boolean((route as { websocket?: boolean }).websocket);
      if (websocket) websocketRoutes.add(route.url);
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const hidden = Boolean((route.schema as { hide?: boolean } | undefined)?.hide);
      for (const method of methods) registered.push({ method: String(method), url: route.url, hidden, websocket });
    });
    app.decorate('registeredRoutes', () => registered.slice());

    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Auth gateway',
          version: options.version,
          description:
            'Multi-channel authentication gateway. Errors are `{"success":false,"error":{"code","message","field?"}}` ' +
            'with a stable `code` (see the README). Send the token from /auth/login or /auth/register as ' +
            '`Authorization: Bearer <token>`.',
        },
        servers: [{ url: new URL(options.baseUrl).origin }],
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'The gateway token (HS256)' },
            cookie: { type: 'apiKey', in: 'cookie', name: 'better-auth.session_token', description: 'Browser session' },
          },
        },
        tags: [
          { name: 'auth', description: 'Sign-up, sign-in, sessions: the simplified /auth/* routes' },
          { name: 'console', description: 'Helpers of the web console at /' },
          { name: 'docs', description: 'This document' },
        ],
      },
    });

    // Built on first use, not at start: Better Auth's generator walks every endpoint, and routes cannot change after
    // ready, so one copy serves every request.
    let finished: Promise<OpenApiDocument> | null = null;
    const build = async (): Promise<OpenApiDocument> => {
      const betterAuth = (await options.betterAuthDocument?.()) ?? null;
      return finishDocument(structuredClone(app.swagger() as unknown as OpenApiDocument), {
        betterAuth,
        websocketRoutes,
      });
    };
    app.decorate('openapiDocument', (): Promise<OpenApiDocument> => {
      finished ??= build().catch((err) => {
        finished = null;
        throw err;
      });
      return finished;
    });

    app.get(
      '/openapi.json',
      {
        schema: {
          summary: 'This OpenAPI 3.1 document',
          tags: ['docs'],
          response: {
            200: {
              description: 'The OpenAPI document of every route',
              type: 'object',
              additionalProperties: true,
              examples: [{ openapi: '3.1.0', info: { title: 'Auth gateway', version: options.version }, paths: {} }],
            },
          },
        },
      },
      async () => app.openapiDocument(),
    );

    app.get('/docs', { schema: { hide: true }, onSend: setDocsCsp }, async (_request, reply) =>
      reply.type('text/html; charset=utf-8').send(docsPage()),
    );

    // Scalar's bundle (about 4 MB of JavaScript inside @scalar/fastify-api-reference) is loaded on the first request
    // for it, not at start. Only the bundle is taken from Scalar's plugin: its own page has an inline script, which
    // this CSP forbids.
    let script: Promise<string> | null = null;
    app.get(SCALAR_SCRIPT, { schema: { hide: true }, onSend: setDocsCsp }, async (_request, reply) => {
      script ??= loadScalarBundle().catch((err) => {
        script = null;
        throw err;
      });
      return reply
        .type('application/javascript; charset=utf-8')
        .header('cache-control', 'public, max-age=3600')
        .send(await script);
    });
  },
  { name: 'docs', dependencies: ['security'] },
);

/** A route as registered (after this plugin), for checking that the document covers every one. */
export interface RegisteredRoute {
  method: string;
  url: string;
  hidden: boolean;
  websocket: boolean;
}

/** Scalar's standalone bundle, as its Fastify plugin serves it (the plugin keeps the string to itself). */
async function loadScalarBundle(): Promise<string> {
  const { default: scalar } = await import('@scalar/fastify-api-reference');
  const scratch = Fastify({ logger: false });
  try {
    await scratch.register(scalar, { routePrefix: '/scalar', configuration: { url: '/openapi.json' } });
    const res = await scratch.inject({ method: 'GET', url: '/scalar/js/scalar.js' });
    if (res.statusCode !== 200) throw new Error(`Scalar's plugin answered ${res.statusCode} for its bundle`);
    return res.body;
  } finally {
    await scratch.close();
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered after the docs plugin (which registers first): what the document must cover. */
    registeredRoutes(): RegisteredRoute[];
    /** The finished OpenAPI document (what GET /openapi.json serves). */
    openapiDocument(): Promise<OpenApiDocument>;
  }
}
