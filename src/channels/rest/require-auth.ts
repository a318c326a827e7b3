import type { FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import { type AuthContext, type Authenticator, hasSessionCookie, type Maybe } from '../../authenticator/index.js';
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
    let result: Maybe<AuthContext | null>;
    try {
      result = authenticator.authenticateRequest(request);
    } catch (err) {
      return done(err as Error);
    }
    if (result instanceof Promise) result.then((context) => admitCaller(request, reply, done, context), done);
    else admitCaller(request, reply, done, result);
  };
}

/** Outside requireAuth's closure: a named function made per request costs tsx's name bookkeeping on every call. */
function admitCaller(
  request: FastifyRequest,
  reply: FastifyReply,
  done: (err?: Error) => void,
  context: AuthContext | null,
): void {
  if (!context) {
    const code =
      request.headers.authorization || hasSessionCookie(request.headers.cookie) ? 'INVALID_TOKEN' : 'AUTH_REQUIRED';
    done(new AppError(code));
    return;
  }
  carryRenewal(reply, context);
  request.auth = context;
  done();
}

/** What an authentication that extended the session hands back: a fresh token, or Better Auth's refreshed cookie. */
export function carryRenewal(reply: FastifyReply, context: AuthContext | null): void {
  if (context?.renewedToken) reply.header('x-auth-token', context.renewedToken);
  if (context?.renewedCookies) reply.header('set-cookie', context.renewedCookies);
}

/** The context requireAuth set; routes behind it call this instead of repeating the null check. */
export function authOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new AppError('AUTH_REQUIRED');
  return request.auth;
}
