import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import { ErrorResponse } from './auth.schemas.js';
import { authOf, requireAuth } from './require-auth.js';

// Query values are strings (the app does not coerce types): limit is checked by pattern, 1..100.
const AuditQuery = T.Object({
  limit: T.Optional(T.String({ pattern: '^([1-9]|[1-9][0-9]|100)$', default: '20', description: '1 to 100' })),
  cursor: T.Optional(
    T.String({ pattern: '^[1-9][0-9]{0,17}$', description: 'nextCursor of the previous page (an opaque event id)' }),
  ),
});
type AuditQuery = Static<typeof AuditQuery>;

const AuditEventView = T.Object({
  id: T.String(),
  createdAt: T.String({ format: 'date-time' }),
  event: T.String({ examples: ['login.success'] }),
  sessionId: T.Union([T.String(), T.Null()]),
  channel: T.Union([T.String(), T.Null()]),
  ip: T.Union([T.String(), T.Null()]),
  userAgent: T.Union([T.String(), T.Null()]),
  details: T.Record(T.String(), T.Unknown()),
});

const AuditPage = T.Object({
  success: T.Literal(true),
  events: T.Array(AuditEventView),
  nextCursor: T.Union([T.String(), T.Null()], { description: 'null on the last page' }),
});

/** GET /auth/audit: the signed-in user's own security events, newest first, a page at a time. */
export async function auditRoutes(app: FastifyInstance, deps: { audit: AuditLog; authenticator: Authenticator }) {
  const ErrorRef = ErrorResponse;
  app.get<{ Querystring: AuditQuery }>(
    '/auth/audit',
    {
      preHandler: requireAuth(deps.authenticator),
      schema: {
        summary: "The signed-in user's security events (sign-ins, failures, lockouts, ...), newest first",
        tags: ['auth'],
        security: [{ bearer: [] }],
        querystring: AuditQuery,
        response: { 200: AuditPage, 400: ErrorRef, 401: ErrorRef, 429: ErrorRef, 503: ErrorRef },
      },
    },
    async (request) => {
      const { userId } = authOf(request);
      const limit = Number(request.query.limit ?? 20);
      // One row more than asked tells whether another page exists without a COUNT.
      const rows = await deps.audit.listForUser(userId, { limit: limit + 1, before: request.query.cursor });
      const page = rows.slice(0, limit);
      return {
        success: true as const,
        events: page.map(({ userId: _user, ...row }) => row),
        nextCursor: rows.length > limit ? (page.at(-1)?.id ?? null) : null,
      };
    },
  );
}
