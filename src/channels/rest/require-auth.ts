import type { FastifyRequest, preHandlerHookHandler } from 'fastify';
import type { AuthContext, Authenticator, Maybe } from '../../authenticator/index.js';
import { AppError } from '../../errors/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by requireAuth: who is calling. */
    auth: AuthContext | null;
  }
}

/**
 * preHandler for routes that need a signed-in caller: a bearer token or a Better Auth cookie. A renewed token (the
 * session was just extended) goes back in X-Auth-Token. Callback-style: a cached bearer check (the hot path) passes
 * without creating a promise (each one pays the async-hooks bookkeeping of Better Auth's AsyncLocalStorage).
 */
export function requireAuth(authenticator: Authenticator): preHandlerHookHandler {
  return (request, reply, done) => {
    const admit = (context: AuthContext | null) => {
      if (!context) {
        const code = request.headers.authorization || request.headers.cookie ? 'INVALID_TOKEN' : 'AUTH_REQUIRED';
        return done(new AppError(code));
      }
      if (context.renewedToken) reply.header('x-auth-token', context.renewedToken);
      request.auth = context;
      done();
    };
    let result: Maybe<AuthContext | null>;
    try {
      result = authenticator.authenticateRequest(request);
    } catch (err) {
      return done(err as Error);
    }
    if (result instanceof Promise) result.then(admit, done);
    else admit(result);
  };
}

/** The context requireAuth set; routes behind it call this instead of repeating the null check. */
export function authOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new AppError('AUTH_REQUIRED');
  return request.auth;
}
