import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import {
  DEVICE_COOKIE_MAX_AGE,
  DEVICE_HEADER,
  deviceCookieName,
  deviceKeyOf,
  mintDeviceKey,
} from '../accounts/devices.js';
import type { AuditLog } from '../audit/index.js';
import { AppError } from '../errors/index.js';
import { clientKey } from '../ratelimit/client-key.js';
import { createOncePerWindow } from '../ratelimit/once-per-window.js';
import { requestPath } from '../ratelimit/rate-limiter.js';
import type { IpPolicy } from './ip-policy.js';
import { signInContext } from './sign-in-guard.js';

/**
 * Everything that can start a session (paths, and the patterns of their routes): our sign-in routes (password,
 * anonymous, OAuth, magic link, passkey, the 2FA step, the Telegram Login Widget) and all of Better Auth's. Signed-in routes under these prefixes
 * (e.g. /auth/oauth/accounts) are refused for the same addresses by the Authenticator anyway.
 */
const SIGN_IN =
  /^\/(?:api\/auth\/|auth\/(?:login|register|anonymous|oauth|magic-link|passkey\/authenticate|2fa\/verify|channels\/telegram\/widget)(?:$|[/?]))/;
/**
 * The path of a request for one of the sign-in routes, or null. Never by the raw URL alone: Fastify's router decodes
 * the path, so `/auth/%6cogin` is served by /auth/login. A path with an escape, a dot or a backslash is read as the rate
 * limiter reads it (dot segments resolved, percent-decoded), and the route it was dispatched to (its pattern:
 * `/api/auth/*` for all of Better Auth's) counts too. Any other path reads the same either way and is tested as it is:
 * this runs on every request, and the URL parser and the route options getter cost microseconds a session check need
 * not pay.
 */
function signInPath(request: FastifyRequest): string | null {
  const raw = request.url.split('?', 1)[0] ?? '';
  if (!/[%.\\]/.test(raw)) return SIGN_IN.test(raw) ? raw : null;
  const path = requestPath(raw);
  if (SIGN_IN.test(path)) return path;
  const route = request.routeOptions.url;
  return route !== undefined && SIGN_IN.test(route) ? path : null;
}

/** Of those, the paths that create a session, 2FA second steps too (their response carries the device key back). */
const SESSION_PATH =
  /^\/(?:auth\/(?:login|register|anonymous|magic-link\/verify|passkey\/authenticate|2fa\/verify|channels\/telegram\/widget)|api\/auth\/(?:sign-in\/[\w-]+|sign-up\/[\w-]+|passkey\/authenticate|passkey\/verify-authentication|callback\/[\w-]+|magic-link\/verify|two-factor\/verify-(?:totp|backup-code)))$/;

declare module 'fastify' {
  interface FastifyRequest {
    /** The device key of a sign-in request (sent by the client, or minted for it). */
    deviceKey: string | null;
  }
}

export interface AccessOptions {
  ipPolicy: IpPolicy;
  audit: AuditLog;
  /** Name the device cookie __Host- and set it Secure (https base URL or https_only). */
  secureCookies: boolean;
}

/**
 * Sign-in requests pass the global IP lists before any work (no password is hashed for a refused address), and carry
 * a device key into the auth engine so the new session is filed under its device. Per-user allow lists and disabled
 * accounts are checked where the session is created (the sign-in guard), and on every later authentication.
 */
export const accessPlugin = fp<AccessOptions>(
  async (app: FastifyInstance, { ipPolicy, audit, secureCookies }) => {
    app.decorateRequest('deviceKey', null);
    const deviceCookie = deviceCookieName(secureCookies);
    const refusedOnce = createOncePerWindow();

    // Callback-style hooks: every request passes through them, and most (not a sign-in) with no work but a path check.
    app.addHook('onRequest', (request: FastifyRequest, _reply, done) => {
      const path = signInPath(request);
      if (path === null) return done();
      const refusal = ipPolicy.refuseGlobally(request.ip);
      if (refusal) {
        // A row once per client and reason a minute, not per request: the rate limits cap each sign-in route, but
        // together (and with rate_limit.enabled false, unlimited) they would still let one address write a row per
        // request. Not keyed by path: any path under /api/auth/ is a sign-in path.
        if (!refusedOnce.first(`${clientKey(request.ip)}|${refusal}`)) return done(new AppError('IP_NOT_ALLOWED'));
        const ua = request.headers['user-agent'];
        return void audit
          .record({
            event: 'ip.refused',
            channel: 'rest',
            ip: request.ip,
            userAgent: typeof ua === 'string' ? ua : null,
            details: { reason: refusal, at: 'sign-in', path },
          })
          .then(() => done(new AppError('IP_NOT_ALLOWED')), done);
      }
      if ((request.method === 'POST' || request.method === 'GET') && SESSION_PATH.test(path)) {
        const key = deviceKeyOf(request.headers, secureCookies) ?? mintDeviceKey();
        request.deviceKey = key;
        request.headers[DEVICE_HEADER] = key;
      }
      done();
    });

    // Routes that build their own headers for the engine (anonymous, magic link, passkeys) still get the device: the
    // key travels with the request's async context to the sign-in guard. preHandler, not onRequest: body parsing
    // resumes from socket events, outside a context entered earlier.
    app.addHook('preHandler', (request, _reply, done) => {
      if (request.deviceKey) signInContext.run({ deviceKey: request.deviceKey }, done);
      else done();
    });

    app.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload, done) => {
      if (!request.deviceKey || reply.statusCode >= 400) return done(null, payload);
      reply.header(DEVICE_HEADER, request.deviceKey);
      // Path=/ and no Domain, as the __Host- prefix requires.
      const cookie = `${deviceCookie}=${request.deviceKey}; Path=/; Max-Age=${DEVICE_COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax${secureCookies ? '; Secure' : ''}`;
      // Fastify adds a Set-Cookie to those already set (handing it the list back would send each of them twice).
      reply.header('set-cookie', cookie);
      done(null, payload);
    });
  },
  { name: 'access' },
);
