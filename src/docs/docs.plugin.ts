import swagger from '@fastify/swagger';
import scalar from '@scalar/fastify-api-reference';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
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

    let betterAuth: ExternalDocument | null = null;
    app.addHook('onReady', async () => {
      betterAuth = (await options.betterAuthDocument?.()) ?? null;
    });

    let finished: OpenApiDocument | null = null;
    app.decorate('openapiDocument', (): OpenApiDocument => {
      // Routes cannot change after ready; one copy serves every request.
      finished ??= finishDocument(structuredClone(app.swagger() as unknown as OpenApiDocument), {
        betterAuth,
        websocketRoutes,
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

    // Scalar's plugin serves its bundle at SCALAR_SCRIPT and its own page (an inline script, which our CSP forbids)
    // at SCALAR_PREFIX/: only the bundle is let through.
    await app.register(scalar, {
      routePrefix: SCALAR_PREFIX,
      configuration: { url: '/openapi.json' },
      hooks: {
        onRequest: async (request, reply) => {
          if (request.url.split('?')[0] !== SCALAR_SCRIPT) return reply.callNotFound();
          reply.header('content-security-policy', DOCS_CSP);
          reply.header('cache-control', 'public, max-age=3600');
        },
      },
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

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered after the docs plugin (which registers first): what the document must cover. */
    registeredRoutes(): RegisteredRoute[];
    /** The finished OpenAPI document (what GET /openapi.json serves). */
    openapiDocument(): OpenApiDocument;
  }
}
