import { APIError } from 'better-auth/api';
import type { Database } from '../db/index.js';
import { isUniqueViolation } from '../db/index.js';
import { AppError } from '../errors/index.js';
import { type BetterAuthDeps, type BetterAuthInstance, createBetterAuth } from './better-auth.js';

export interface NewSession {
  userId: string;
  sessionId: string;
}

/**
 * What the rest of the gateway needs from the auth engine. Channels and routes see this interface, never Better Auth.
 */
export interface AuthEngine {
  /** Better Auth's own routes (/api/auth/*), as a fetch-style handler. */
  handle(request: Request): Promise<Response>;
  signUpEmail(input: { email: string; password: string; name: string }, headers: Headers): Promise<NewSession>;
  signInEmail(input: { email: string; password: string }, headers: Headers): Promise<NewSession>;
  /** The session a Better Auth cookie (or Better Auth bearer token) names, or null. */
  sessionIdFromHeaders(headers: Headers): Promise<string | null>;
  /** Better Auth's opaque token of a session: lets our JWT stand in for Better Auth's cookie on /api/auth/*. */
  sessionToken(sessionId: string): Promise<string | null>;
}

export function createAuthEngine(deps: BetterAuthDeps): AuthEngine & { readonly betterAuth: BetterAuthInstance } {
  const auth = createBetterAuth(deps);
  const { db } = deps;

  return {
    betterAuth: auth,
    handle: (request) => auth.handler(request),

    async signUpEmail(input, headers) {
      try {
        const res = await auth.api.signUpEmail({ body: input, headers });
        if (!res.token) throw new Error('sign-up returned no session');
        return sessionOf(db, res.token);
      } catch (err) {
        // Two sign-ups of one email can both pass Better Auth's existence check; the unique index decides.
        if (isUniqueViolation(err) || (await emailExists(db, input.email))) {
          throw new AppError('EMAIL_TAKEN', undefined, { field: 'email' }, { cause: err });
        }
        throw translate(err);
      }
    },

    async signInEmail(input, headers) {
      try {
        const res = await auth.api.signInEmail({ body: input, headers });
        return sessionOf(db, res.token);
      } catch (err) {
        throw translate(err);
      }
    },

    async sessionIdFromHeaders(headers) {
      const found = await auth.api.getSession({ headers, query: { disableRefresh: true } }).catch(() => null);
      return found?.session.id ?? null;
    },

    async sessionToken(sessionId) {
      const { rows } = await db.query<{ token: string }>(
        'SELECT token FROM sessions WHERE id = $1 AND expires_at > now()',
        [sessionId],
      );
      return rows[0]?.token ?? null;
    },
  };
}

async function sessionOf(db: Database, token: string): Promise<NewSession> {
  const { rows } = await db.query<{ id: string; user_id: string }>(
    'SELECT id, user_id FROM sessions WHERE token = $1',
    [token],
  );
  const row = rows[0];
  if (!row) throw new Error('session created by Better Auth was not found');
  return { userId: row.user_id, sessionId: row.id };
}

async function emailExists(db: Database, email: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM users WHERE lower(email) = lower($1)', [email]);
  return rows.length > 0;
}

/** Better Auth's error codes mapped onto our catalogue; anything else is rethrown as is (500 / 503 upstream). */
function translate(err: unknown): unknown {
  if (!(err instanceof APIError)) return err;
  const code = (err.body as { code?: string } | undefined)?.code ?? '';
  switch (code) {
    case 'INVALID_EMAIL_OR_PASSWORD':
    case 'CREDENTIAL_ACCOUNT_NOT_FOUND':
      return new AppError('INVALID_CREDENTIALS', undefined, {}, { cause: err });
    case 'USER_ALREADY_EXISTS':
    case 'USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL':
      return new AppError('EMAIL_TAKEN', undefined, { field: 'email' }, { cause: err });
    case 'PASSWORD_TOO_SHORT':
    case 'PASSWORD_TOO_LONG':
      return new AppError('VALIDATION_FAILED', err.message, { field: 'password' }, { cause: err });
    case 'INVALID_EMAIL':
      return new AppError(
        'VALIDATION_FAILED',
        'email must be a valid email address',
        { field: 'email' },
        { cause: err },
      );
    case 'IP_NOT_ALLOWED':
    case 'ACCOUNT_DISABLED':
      return new AppError(code, undefined, {}, { cause: err });
    default:
      if (err.statusCode >= 400 && err.statusCode < 500) {
        return new AppError('BAD_REQUEST', err.message || undefined, {}, { cause: err });
      }
      return err;
  }
}
