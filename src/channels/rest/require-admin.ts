import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { AuditLog } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import type { Queryable } from '../../db/index.js';
import { AppError } from '../../errors/index.js';
import { authOf, requireAuth } from './require-auth.js';

/**
 * preHandler for /admin/*: a signed-in caller whose role is 'admin', read from the database on each request (a
 * demoted admin loses access at once). Anyone else: 403 ADMIN_REQUIRED, audited.
 */
export function requireAdmin(deps: {
  authenticator: Authenticator;
  db: Queryable;
  audit: AuditLog;
}): preHandlerAsyncHookHandler {
  const signedIn = requireAuth(deps.authenticator);
  return async function (this: unknown, request: FastifyRequest, reply: FastifyReply) {
    await new Promise<void>((resolve, reject) =>
      signedIn.call(this as never, request, reply, (err?: Error) => (err ? reject(err) : resolve())),
    );
    const auth = authOf(request);
    const { rows } = await deps.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [auth.userId]);
    if (rows[0]?.role === 'admin') return;
    const ua = request.headers['user-agent'];
    await deps.audit.record({
      event: 'admin.action',
      userId: auth.userId,
      sessionId: auth.sessionId,
      channel: 'rest',
      ip: request.ip,
      userAgent: typeof ua === 'string' ? ua : null,
      details: { action: `${request.method} ${request.routeOptions.url ?? ''}`, outcome: 'refused' },
    });
    throw new AppError('ADMIN_REQUIRED');
  };
}
