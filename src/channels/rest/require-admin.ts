import type { FastifyRequest, preHandlerAsyncHookHandler, preHandlerHookHandler } from 'fastify';
import type { AuditLog } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import type { Queryable } from '../../db/index.js';
import { AppError } from '../../errors/index.js';
import { authOf, requireAuth } from './require-auth.js';

/**
 * preHandlers for /admin/*, in order: a signed-in caller (requireAuth), whose role is 'admin', read from the database
 * on each request (a demoted admin loses access at once). Anyone else: 403 ADMIN_REQUIRED, audited.
 */
export function requireAdmin(deps: {
  authenticator: Authenticator;
  db: Queryable;
  audit: AuditLog;
}): [preHandlerHookHandler, preHandlerAsyncHookHandler] {
  return [requireAuth(deps.authenticator), adminOnly];
  async function adminOnly(request: FastifyRequest) {
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
  }
}
