import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet, { type HelmetOptions } from 'helmet';
import { BETTER_AUTH_MOUNT_URL } from '../auth/mount.plugin.js';
import { AppError } from '../errors/index.js';

/** Methods that change nothing: a cross-site one is harmless (and a link or an image must keep working). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CORS from one origin list (the same list Better Auth trusts): credentials allowed, nothing else. Security headers
 * from helmet, chosen for a JSON API as the OWASP REST Security Cheat Sheet lists them: the strictest CSP, nosniff,
 * frames denied, no referrer, same-origin resources, HSTS over HTTPS, and `Cache-Control: no-store` (answers carry
 * tokens and personal data; routes that serve cacheable files set their own). Helmet's headers for HTML documents
 * (COOP, Origin-Agent-Cluster, DNS prefetch, and the legacy X-Download-Options, X-Permitted-Cross-Domain-Policies and
 * X-XSS-Protection) are left to the routes that serve pages (console, /docs), which add what they need.
 *
 * Helmet's headers depend on its options only, never on the request: they are computed once, at start, by running
 * helmet's own middleware against a recording response, and set on every reply from that table. (@fastify/helmet
 * rebuilds the middleware, CSP parsing included, on every request: about a fifth of a cached session check.)
 */
export const securityPlugin = fp<{ origins: string[]; https: boolean }>(
  async (app: FastifyInstance, { origins, https }) => {
    const headers = securityHeaders(https);
    const trusted = new Set(origins);
    app.addHook('onRequest', (request, reply, done) => {
      reply.headers(headers);
      // Only a method that changes something is checked: Fastify's routeOptions getter builds an object per call, and
      // the hot path (GET /auth/session) is spared it.
      const changes = !SAFE_METHODS.has(request.method);
      if (changes && crossSiteWithCookies(request.method, request.routeOptions.url, request.headers, trusted)) {
        done(new AppError('INVALID_ORIGIN'));
        return;
      }
      done();
    });
    await app.register(cors, {
      origin: origins,
      credentials: true,
      methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      // X-Device-Id: every sign-in answers with the device key, which a later sign-in sends back (accounts/devices.ts).
      allowedHeaders: ['Content-Type', 'Authorization', 'X-Request-Id', 'X-2FA-Code', 'X-Device-Id'],
      exposedHeaders: ['X-Auth-Token', 'X-Request-Id', 'Retry-After', 'X-Device-Id'],
      maxAge: 600,
      // An OPTIONS request without Origin / Access-Control-Request-Method is not a preflight: 204 with no CORS grant,
      // rather than @fastify/cors's bare text/plain 400 outside the JSON error envelope.
      strictPreflight: false,
    });
  },
  { name: 'security' },
);

/**
 * A request that changes something, carries cookies and comes from a page of an origin outside the trusted list: a
 * cross-site request forgery, refused (OWASP CSRF Cheat Sheet: verifying the origin with standard headers). SameSite=
 * Lax keeps the cookie off cross-site POSTs, but not off those from the same site (a sibling subdomain, another port
 * on the same host), and a body-less POST needs no CORS preflight. The origin is the Origin header, else the
 * Referer's; a request with neither is not a browser's (browsers send Origin on every POST) and passes. A bearer token
 * is a credential no other site can make a browser send, so a request with one passes. Better Auth checks its own
 * routes against the same list: only what is routed to its mount (`route`, the pattern the request matched) is left
 * to it, not every /api/auth/ URL (the gateway's own passkey routes sit there too, and Better Auth never sees them).
 */
export function crossSiteWithCookies(
  method: string,
  route: string | undefined,
  headers: { cookie?: string; authorization?: string; origin?: string; referer?: string },
  trusted: ReadonlySet<string>,
): boolean {
  if (SAFE_METHODS.has(method) || !headers.cookie || headers.authorization !== undefined) return false;
  if (route === BETTER_AUTH_MOUNT_URL) return false;
  const origin = headers.origin ?? originOf(headers.referer);
  return origin !== undefined && !trusted.has(origin);
}

/** The origin of a Referer URL ('null' when it is not one: refused like any other untrusted origin). */
function originOf(referer: string | undefined): string | undefined {
  if (referer === undefined) return undefined;
  try {
    return new URL(referer).origin;
  } catch {
    return 'null';
  }
}

/**
 * Every answer's security headers (names lower-cased): helmet's for a JSON API and `Cache-Control: no-store`. Also
 * written by hand on the answers to requests Node could not parse (client-errors.ts), which no hook sees.
 */
export function securityHeaders(https: boolean): Record<string, string> {
  return {
    ...helmetHeaders({
      // Not helmet's default directives: those are for HTML pages (style-src, fonts, upgrade-insecure-requests).
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
      },
      hsts: https ? { maxAge: 31536000, includeSubDomains: true } : false,
      xFrameOptions: { action: 'deny' },
      crossOriginOpenerPolicy: false,
      originAgentCluster: false,
      xDnsPrefetchControl: false,
      xDownloadOptions: false,
      xPermittedCrossDomainPolicies: false,
      xXssProtection: false,
    }),
    'cache-control': 'no-store',
  };
}

/** The headers helmet sets for these options (names lower-cased), read off one run of its middleware. */
export function helmetHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  let failure: unknown = null;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    failure = err ?? null;
  });
  if (failure) throw failure;
  return headers;
}
