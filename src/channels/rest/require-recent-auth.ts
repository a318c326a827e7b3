import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { RecentAuth } from '../../account/index.js';
import { authOf } from './require-auth.js';

/** Header carrying a current TOTP code, for callers whose sign-in is older than auth.recent_auth_window. */
export const REAUTH_CODE_HEADER = 'x-2fa-code';

/**
 * preHandler for sensitive operations, placed after requireAuth: `preHandler: [requireAuth(a), requireRecentAuth(r)]`.
 * Passes when the caller's session is younger than auth.recent_auth_window or X-2FA-Code holds a valid TOTP code;
 * otherwise 403 REAUTH_REQUIRED (401 TWO_FACTOR_INVALID_CODE for a wrong code, 429 TWO_FACTOR_LOCKED).
 */
export function requireRecentAuth(recentAuth: RecentAuth): preHandlerAsyncHookHandler {
  return async (request: FastifyRequest) => {
    const { userId, sessionId } = authOf(request);
    await recentAuth.assert(userId, sessionId, reauthCode(request));
  };
}

export function reauthCode(request: FastifyRequest): string | undefined {
  const value = request.headers[REAUTH_CODE_HEADER];
  return typeof value === 'string' ? value.trim().slice(0, 32) : undefined;
}
