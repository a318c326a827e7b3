import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import {
  DEVICE_COOKIE,
  DEVICE_COOKIE_MAX_AGE,
  DEVICE_HEADER,
  deviceKeyOf,
  mintDeviceKey,
} from '../accounts/devices.js';
import type { AuditLog } from '../audit/index.js';
import { AppError } from '../errors/index.js';
import type { IpPolicy } from './ip-policy.js';

/** Everything that can start a session: our sign-in routes and all of Better Auth's (passkey, OAuth callback, ...). */
const SIGN_IN_PATH = /^\/(?:api\/auth\/|auth\/(?:login|register|anonymous|oauth\/|magic-link\/)(?:$|[/?]))/;
/** Of those, the ones that create a session (their response carries the device key back). */
const SESSION_PATH =
  /^\/(?:auth\/(?:login|register|anonymous|oauth\/exchange|magic-link\/verify)|api\/auth\/(?:sign-in\/|sign-up\/|passkey\/verify-authentication|callback\/|magic-link\/verify))/;

declare module 'fastify' {
  interface FastifyRequest {
    /** The device key of a sign-in request (sent by the client, or minted for it). */
    deviceKey: string | null;
  }
}

export interface AccessOptions {
  ipPolicy: IpPolicy;
  audit: AuditLog;
  /** Set the device cookie with Secure (https base URL). */
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

    app.addHook('onRequest', async (request: FastifyRequest) => {
      const path = request.url.split('?', 1)[0] ?? '';
      if (!SIGN_IN_PATH.test(path)) return;
      const refusal = ipPolicy.refuseGlobally(request.ip);
      if (refusal) {
        const ua = request.headers['user-agent'];
        await audit.record({
          event: 'ip.refused',
          channel: 'rest',
          ip: request.ip,
          userAgent: typeof ua === 'string' ? ua : null,
          details: { reason: refusal, at: 'sign-in', path },
        });
        throw new AppError('IP_NOT_ALLOWED');
      }
      if (request.method === 'POST' || request.method === 'GET') {
        if (!SESSION_PATH.test(path)) return;
        const key = deviceKeyOf(request.headers) ?? mintDeviceKey();
        request.deviceKey = key;
        request.headers[DEVICE_HEADER] = key;
      }
    });

    app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload) => {
      if (!request.deviceKey || reply.statusCode >= 400) return payload;
      reply.header(DEVICE_HEADER, request.deviceKey);
      const cookie = `${DEVICE_COOKIE}=${request.deviceKey}; Path=/; Max-Age=${DEVICE_COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax${secureCookies ? '; Secure' : ''}`;
      const existing = reply.getHeader('set-cookie');
      const list = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
      reply.header('set-cookie', [...list, cookie]);
      return payload;
    });
  },
  { name: 'access' },
);
