import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { AuthContext, Authenticator } from '../../authenticator/index.js';
import { AppError } from '../../errors/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by requireAuth: who is calling. */
    auth: AuthContext | null;
  }
}

/**
 * preHandler for routes that need a signed-in caller: a bearer token or a Better Auth cookie. A renewed token (the
 * session was just extended) goes back in X-Auth-Token.
 */
export function requireAuth(authenticator: Authenticator): preHandlerAsyncHookHandler {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const context = await authenticator.authenticateRequest(request);
    if (!context) {
      throw new AppError(request.headers.authorization || request.headers.cookie ? 'INVALID_TOKEN' : 'AUTH_REQUIRED');
    }
    if (context.renewedToken) reply.header('x-auth-token', context.renewedToken);
    request.auth = context;
  };
}

/** The context requireAuth set; routes behind it call this instead of repeating the null check. */
export function authOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new AppError('AUTH_REQUIRED');
  return request.auth;
}
