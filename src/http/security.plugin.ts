import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * CORS from one origin list (the same list Better Auth trusts): credentials allowed, nothing else. Security headers
 * from helmet; the API serves JSON, so the CSP is the strictest one.
 */
export const securityPlugin = fp<{ origins: string[]; https: boolean }>(
  async (app: FastifyInstance, { origins, https }) => {
    await app.register(helmet, {
      contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      hsts: https ? { maxAge: 31536000, includeSubDomains: true } : false,
    });
    await app.register(cors, {
      origin: origins,
      credentials: true,
      methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['Content-Type', 'Authorization', 'X-Request-Id', 'X-2FA-Code'],
      exposedHeaders: ['X-Auth-Token', 'X-Request-Id', 'Retry-After'],
      maxAge: 600,
      // An OPTIONS request without Origin / Access-Control-Request-Method is not a preflight: 204 with no CORS grant,
      // rather than @fastify/cors's bare text/plain 400 outside the JSON error envelope.
      strictPreflight: false,
    });
  },
  { name: 'security' },
);
