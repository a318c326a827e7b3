import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Authenticator } from '../authenticator/index.js';
import { ErrorResponse } from '../channels/rest/auth.schemas.js';
import { requireAuth } from '../channels/rest/require-auth.js';
import { createQrSvg, QrBody } from './qr.js';

export interface ConsoleOptions {
  authenticator: Authenticator;
  /** The gateway's public URL: its host is where the console's WebSocket panel may connect. */
  baseUrl: string;
}

export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url));
/** The browser half of SimpleWebAuthn, its ESM build straight from node_modules (several files, relative imports). */
const SIMPLEWEBAUTHN_ESM_DIR = dirname(fileURLToPath(import.meta.resolve('@simplewebauthn/browser')));
export const SIMPLEWEBAUTHN_URL = '/vendor/simplewebauthn-browser.js';
const QR_URL = '/console/qr';

/**
 * The console's Content-Security-Policy: nothing inline, nothing from another origin. connect-src names the
 * WebSocket origin of base_url explicitly ('self' covers ws: of the same host in current browsers, not in all).
 */
export function consoleCsp(baseUrl: string): string {
  const url = new URL(baseUrl);
  const ws = `${url.protocol === 'https:' ? 'wss:' : 'ws:'}//${url.host}`;
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "font-src 'self'",
    `connect-src 'self' ${ws}`,
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * The web console at / (plain ES modules and CSS from public/, no build step), the vendored browser libraries it
 * imports, and the one helper route it needs (QR codes for two-factor setup). Encapsulated: its CSP hook applies to
 * its own routes only; the API keeps the strict `default-src 'none'` from the security plugin.
 */
export const consolePlugin = fp<ConsoleOptions>(
  async (app: FastifyInstance, options) => {
    const csp = consoleCsp(options.baseUrl);
    // Every successful answer of the console's file routes carries the console's CSP, 304s included: a browser
    // revalidating index.html merges the 304's headers into the cached page, and the API's `default-src 'none'`
    // there would block the console's own fetches after a reload.
    app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply) => {
      if (reply.statusCode < 400 && request.routeOptions.url !== QR_URL) {
        // Pages: their CSP, and the document-only headers the API's set leaves out.
        reply.header('content-security-policy', csp);
        reply.header('cross-origin-opener-policy', 'same-origin');
        reply.header('origin-agent-cluster', '?1');
      }
    });

    await app.register(fastifyStatic, {
      root: PUBLIC_DIR,
      prefix: '/',
      index: ['index.html'],
      wildcard: true,
      cacheControl: true,
      maxAge: 0, // revalidate with the ETag: a redeployed console is picked up at once
      serveDotFiles: false,
      // With `wildcard`, serveDotFiles only shapes a glob that is never made; `send` decides, and it serves dot-files
      // unless told otherwise. 'ignore' (not 'deny', a 403) makes one the gateway's 404, like any unknown path.
      dotfiles: 'ignore',
    });

    // The passkey routes may serve the same module at the same URL; then theirs stays and these are not added.
    if (!app.hasRoute({ method: 'GET', url: SIMPLEWEBAUTHN_URL })) await app.register(simplewebauthnVendorRoutes);

    const signedIn = requireAuth(options.authenticator);
    app.post(
      QR_URL,
      {
        preHandler: signedIn,
        schema: {
          summary: 'QR code (SVG) of an otpauth:// URI, for two-factor setup in the console',
          description:
            'The URI travels in the body, never in a URL (it holds the TOTP secret). Only for a signed-in caller.',
          tags: ['console'],
          security: [{ bearer: [] }, { cookie: [] }],
          body: QrBody,
          response: {
            200: {
              description: 'An SVG image',
              content: {
                'image/svg+xml': {
                  schema: { type: 'string', examples: ['<svg xmlns="http://www.w3.org/2000/svg" ...></svg>'] },
                },
              },
            },
            400: ErrorResponse,
            401: ErrorResponse,
            413: ErrorResponse,
            415: ErrorResponse,
          },
        },
      },
      async (request, reply) => {
        const svg = await createQrSvg((request.body as { text: string }).text);
        return reply.type('image/svg+xml; charset=utf-8').header('cache-control', 'no-store').send(svg);
      },
    );
  },
  { name: 'console', dependencies: ['security'], encapsulate: true },
);

/**
 * GET /vendor/simplewebauthn-browser.js (a one-line module re-exporting the package) and its files under
 * /vendor/simplewebauthn-browser/. Registered only when nothing else serves that URL yet (the passkey routes may);
 * should another module register it after the console, Fastify refuses the duplicate route at start, naming it.
 */
async function simplewebauthnVendorRoutes(app: FastifyInstance): Promise<void> {
  app.get(SIMPLEWEBAUTHN_URL, { schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=3600')
      .send("export * from './simplewebauthn-browser/index.js';\n"),
  );
  await app.register(fastifyStatic, {
    root: SIMPLEWEBAUTHN_ESM_DIR,
    prefix: '/vendor/simplewebauthn-browser/',
    decorateReply: false,
    maxAge: 3600 * 1000,
    allowedPath: (path) => path.endsWith('.js'),
  });
}
