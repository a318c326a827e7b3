import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../../audit/index.js';
import { type AuthEngine, CLIENT_IP_HEADER, clientIpOf } from '../../auth/index.js';
import type { Authenticator, SessionStore } from '../../authenticator/index.js';
import type { Database } from '../../db/index.js';
import { AppError } from '../../errors/index.js';
import { ErrorResponse, TokenResponse } from './auth.schemas.js';

export interface AnonymousRoutesDeps {
  enabled: boolean;
  /** The license type anonymous users get (free). */
  licenseType: string;
  db: Database;
  engine: AuthEngine;
  authenticator: Authenticator;
  sessions: SessionStore;
  audit: AuditLog;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));

/** Anonymous sign-in for trials. Registering later (POST /auth/register with this token) keeps the same user. */
export async function anonymousRoutes(app: FastifyInstance, deps: AnonymousRoutesDeps): Promise<void> {
  const { db, engine, authenticator, sessions, audit } = deps;

  app.post(
    '/auth/anonymous',
    {
      schema: {
        summary: 'Sign in as a fresh anonymous user (free license); register later to keep it',
        tags: ['anonymous'],
        response: { 201: TokenResponse, ...errors(400, 404, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      if (!deps.enabled) throw new AppError('FEATURE_DISABLED');
      const headers = new Headers({ [CLIENT_IP_HEADER]: clientIpOf(request) });
      const ua = request.headers['user-agent'];
      if (typeof ua === 'string') headers.set('user-agent', ua);
      const { userId, sessionId } = await engine.methods.signInAnonymous(headers);
      await db.query(
        `INSERT INTO user_licenses (user_id, license_type) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING`,
        [userId, deps.licenseType],
      );
      const session = await sessions.findActive(sessionId);
      if (!session) throw new Error('the anonymous session just created is not active');
      await audit.record({
        event: 'signup',
        userId,
        sessionId,
        channel: 'rest',
        ip: request.ip,
        userAgent: typeof ua === 'string' ? ua : null,
        details: { method: 'anonymous' },
      });
      return reply
        .status(201)
        .send({ success: true, userId, token: authenticator.issueToken(userId, sessionId, session.expiresAt) });
    },
  );
}
