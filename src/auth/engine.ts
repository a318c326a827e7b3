import { BASE_ERROR_CODES } from 'better-auth';
import { APIError, getIP } from 'better-auth/api';
import type { AuditOrigin } from '../audit/index.js';
import { usesSecureCookies } from '../config/index.js';
import type { Database } from '../db/index.js';
import { isForeignKeyViolation, isUnavailableError, isUniqueViolation } from '../db/index.js';
import { AppError } from '../errors/index.js';
import { surfaceBusy } from '../passwords/index.js';
import { bareAddress } from '../ratelimit/client-key.js';
import { type BetterAuthDeps, type BetterAuthInstance, createBetterAuth, surfaceUnavailable } from './better-auth.js';
import { generateId } from './ids.js';
import { createPasswordRace } from './password-race.js';
import { createPasswordSignIn } from './password-sign-in.js';
import { sessionOf } from './session-of.js';
import { createSignInMethods, type SignInMethods } from './sign-in-methods.engine.js';
import { createTwoFactorEngine, type TwoFactorEngine } from './two-factor.js';

export interface NewSession {
  userId: string;
  sessionId: string;
  /** When the session ends unless used (its token expires then too). */
  expiresAt: Date;
}

/** Sign-up while auth.require_email_verification is on: no session until the emailed link is followed. */
export interface PendingVerification {
  userId: string;
  sessionId: null;
  verificationRequired: true;
}

/** A correct password for an account with 2FA: no session yet, a challenge for POST /auth/2fa/verify. */
export interface TwoFactorPending {
  twoFactorRequired: true;
  challengeToken: string;
}

/**
 * What the rest of the gateway needs from the auth engine. Channels and routes see this interface, never Better Auth.
 */
export interface AuthEngine {
  /** Better Auth's own routes (/api/auth/*), as a fetch-style handler. */
  handle(request: Request): Promise<Response>;
  /**
   * handle() for Better Auth's POST /sign-in/email naming `email`: a session or 2FA challenge it issued while the
   * account's password changed is undone, and the answer is Better Auth's to a wrong password (password-race.ts).
   */
  handleSignIn(request: Request, email: string): Promise<Response>;
  /**
   * handle() for Better Auth's POST /sign-up/email naming `email`: a sign-up that lost the unique index to another of
   * the same address gets Better Auth's answer to a taken address, as signUpEmail's does (collidedWith).
   */
  handleSignUp(request: Request, email: string): Promise<Response>;
  signUpEmail(
    input: { email: string; password: string; name: string },
    headers: Headers,
  ): Promise<NewSession | PendingVerification>;
  /**
   * A password sign-in. `audited` tells whether the login.success row was written with the session (the gateway's own
   * path does; Better Auth's, taken for accounts with 2FA, leaves it to the caller).
   */
  signInEmail(
    input: { email: string; password: string },
    headers: Headers,
    origin: AuditOrigin,
  ): Promise<(NewSession & { audited: boolean }) | TwoFactorPending>;
  /** The session a Better Auth cookie (or Better Auth bearer token) names, or null. */
  sessionIdFromHeaders(headers: Headers): Promise<string | null>;
  /** The same session with its user (a sign-out records whose session it ended, even one the gateway refuses). */
  sessionFromHeaders(headers: Headers): Promise<{ sessionId: string; userId: string } | null>;
  /** Extends the cookie session behind these headers when due; the Set-Cookie values of its refreshed cookie. */
  refreshCookieSession(headers: Headers): Promise<string[]>;
  /** Better Auth's opaque token of a session: lets our JWT stand in for Better Auth's cookie on /api/auth/*. */
  sessionToken(sessionId: string): Promise<string | null>;
  /** A session for a user another ceremony (a passkey) has authenticated: the same row a password sign-in makes. */
  createSession(userId: string, meta: { ip: string; userAgent: string | null }): Promise<NewSession>;
  /** Sends a reset link when the address has an account; returns the same (nothing) either way. */
  requestPasswordReset(email: string, headers: Headers): Promise<void>;
  /** Sets the password of the token's user (single use) and ends all of their sessions. */
  resetPassword(token: string, newPassword: string): Promise<void>;
  /** The session Better Auth created for an opaque session token (after a 2FA verification). */
  sessionOfToken(token: string): Promise<NewSession>;
  twoFactor: TwoFactorEngine;
  /** OAuth / OIDC, magic-link sessions and anonymous users (src/auth/sign-in-methods*.ts). */
  readonly methods: SignInMethods;
}

export function createAuthEngine(deps: BetterAuthDeps): AuthEngine & { readonly betterAuth: BetterAuthInstance } {
  const auth = createBetterAuth(deps);
  const { db } = deps;
  const twoFactor = createTwoFactorEngine(auth, db, {
    secureCookies: usesSecureCookies(deps.config),
    lockoutThreshold: deps.config.auth.two_factor.lockout_threshold,
    lockoutDuration: deps.config.auth.two_factor.lockout_duration,
  });
  const passwordSignIn = createPasswordSignIn({ ...deps, clientIp: (headers) => getIP(headers, auth.options) });
  const whilePasswordHolds = createPasswordRace(db);
  // Better Auth answers a query it lost to the database with a refusal of its own at times (422 for a sign-up's user
  // insert): an error answer while the database was away is the 503 every lost query gets (surfaceUnavailable).
  const handle = (request: Request) =>
    surfaceUnavailable(
      () => surfaceBusy(() => auth.handler(request)),
      (response) => response.status >= 400,
    );

  async function sessionFromHeaders(headers: Headers): Promise<{ sessionId: string; userId: string } | null> {
    const found = await auth.api.getSession({ headers, query: { disableRefresh: true } }).catch((err: unknown) => {
      // A database that is away is not "no session": 503, as for a bearer token, not a 401 that signs clients out.
      if (isUnavailableError(err)) throw err;
      return null;
    });
    return found ? { sessionId: found.session.id, userId: found.session.userId } : null;
  }

  return {
    betterAuth: auth,
    methods: createSignInMethods(auth, db, deps.config),
    handle,

    async handleSignIn(request, email) {
      try {
        return await whilePasswordHolds(
          email,
          () => handle(request),
          async (response) => {
            if (!response.ok) return null;
            const body = (await response.clone().json()) as { token?: unknown };
            return { sessionToken: typeof body.token === 'string' ? body.token : null };
          },
        );
      } catch (err) {
        // auth.handler answers its own errors: an APIError here is the refusal of a sign-in that outlived its password.
        // Better Auth reads the user, then inserts the session: an account deleted in between breaks the foreign key,
        // which it throws. Gone, the account is answered as an unknown address is (as signInEmail answers it).
        const refusal =
          err instanceof APIError
            ? err
            : isForeignKeyViolation(err) && !(await accountExists(db, email))
              ? APIError.from('UNAUTHORIZED', BASE_ERROR_CODES.INVALID_EMAIL_OR_PASSWORD)
              : null;
        if (!refusal) throw err;
        return Response.json(refusal.body, { status: refusal.statusCode });
      }
    },

    async handleSignUp(request, email) {
      const again = request.clone();
      const response = await handle(request);
      if (response.status !== 422) return response;
      // Better Auth's refusal, as the APIError it answered with (FAILED_TO_CREATE_USER for a lost insert).
      const body = (await response
        .clone()
        .json()
        .catch(() => ({}))) as { code?: string; message?: string };
      if (!(await collidedWith(db, new APIError('UNPROCESSABLE_ENTITY', body), email))) return response;
      // Asked again, Better Auth finds the account and answers as for any taken address: with verification required,
      // as for a new one (a made-up user, no session), and its owner is told (existingUserSignUp); without, 422.
      return handle(again);
    },

    async signUpEmail(input, headers) {
      try {
        const res = await surfaceUnavailable(() => surfaceBusy(() => auth.api.signUpEmail({ body: input, headers })));
        if (!res.token) {
          // Verification required: Better Auth made no session (and answers a duplicate email the same way).
          if (!deps.config.auth.require_email_verification) throw new Error('sign-up returned no session');
          return { userId: res.user.id, sessionId: null, verificationRequired: true };
        }
        return sessionOf(db, res.token);
      } catch (err) {
        const owner = await collidedWith(db, err, input.email);
        if (!owner) throw translate(err);
        // With verification required Better Auth answers a taken address as a new one (a made-up user id) and lets its
        // owner know: so is one that only the unique index found taken, or a burst of sign-ups would tell.
        if (deps.config.auth.require_email_verification) {
          await deps.accountHooks?.existingUserSignUp(owner);
          return { userId: generateId('user'), sessionId: null, verificationRequired: true };
        }
        throw new AppError('EMAIL_TAKEN', undefined, { field: 'email' }, { cause: err });
      }
    },

    async signInEmail(input, headers, origin) {
      // Our two-round-trip path; Better Auth's endpoint for accounts with 2FA (it issues the challenge).
      const session = await passwordSignIn(input, headers, origin);
      if (session) return { ...session, audited: true };
      try {
        const { headers: out, response } = await whilePasswordHolds(
          input.email,
          () =>
            surfaceUnavailable(() =>
              surfaceBusy(() => auth.api.signInEmail({ body: input, headers, returnHeaders: true })),
            ),
          async ({ response }) => ({ sessionToken: 'token' in response ? response.token : null }),
        );
        if ('twoFactorRedirect' in response && response.twoFactorRedirect) {
          const challengeToken = twoFactor.challengeFromCookies(out.getSetCookie());
          if (!challengeToken) throw new Error('two-factor sign-in set no challenge');
          return { twoFactorRequired: true, challengeToken };
        }
        if (!('token' in response) || !response.token) throw new Error('sign-in returned no session');
        return { ...(await sessionOf(db, response.token)), audited: false };
      } catch (err) {
        // The account deleted as its session was inserted: answered as an unknown address is.
        if (isForeignKeyViolation(err)) throw new AppError('INVALID_CREDENTIALS', undefined, {}, { cause: err });
        throw translate(err);
      }
    },

    sessionFromHeaders,
    sessionIdFromHeaders: async (headers) => (await sessionFromHeaders(headers))?.sessionId ?? null,

    async refreshCookieSession(headers) {
      const { headers: answer } = await auth.api.getSession({ headers, returnHeaders: true });
      return answer.getSetCookie();
    },

    async createSession(userId, meta) {
      const context = await auth.$context;
      // The sign-in guard runs inside (disabled user, IP restrictions): its refusal becomes our AppError. The user
      // deleted after the guard read it (the insert breaks the foreign key) is refused as the guard refuses a session
      // whose user went just after its insert; a passkey gone with its account answers PASSKEY_UNKNOWN_CREDENTIAL then.
      const session = await context.internalAdapter
        .createSession(userId, false, { ipAddress: bareAddress(meta.ip), userAgent: meta.userAgent ?? '' })
        .catch((err: unknown) => {
          if (isForeignKeyViolation(err)) throw new AppError('ACCOUNT_DISABLED', undefined, {}, { cause: err });
          throw translate(err);
        });
      if (!session) throw new Error('Better Auth created no session');
      return { userId, sessionId: session.id, expiresAt: new Date(session.expiresAt) };
    },

    async sessionToken(sessionId) {
      const { rows } = await db.query<{ token: string }>(
        'SELECT token FROM sessions WHERE id = $1 AND expires_at > now()',
        [sessionId],
      );
      return rows[0]?.token ?? null;
    },

    async requestPasswordReset(email, headers) {
      await auth.api.requestPasswordReset({ body: { email }, headers });
    },

    async resetPassword(token, newPassword) {
      try {
        await surfaceUnavailable(() => auth.api.resetPassword({ body: { token, newPassword } }));
      } catch (err) {
        const code = err instanceof APIError ? (err.body as { code?: string } | undefined)?.code : undefined;
        if (code === 'INVALID_TOKEN' || code === 'USER_NOT_FOUND') {
          throw new AppError('INVALID_RESET_TOKEN', undefined, { field: 'token' }, { cause: err });
        }
        throw translate(err);
      }
    },

    sessionOfToken: (token) => sessionOf(db, token),
    twoFactor,
  };
}

/** Better Auth's code for an APIError (USER_ALREADY_EXISTS, ...). */
function codeOf(err: unknown): string | undefined {
  return err instanceof APIError ? (err.body as { code?: string } | undefined)?.code : undefined;
}

/**
 * The account a failed sign-up collided with, or null. Two sign-ups of one email can both pass Better Auth's existence
 * check; the unique index decides, and Better Auth reports the loser's insert as FAILED_TO_CREATE_USER (dropping the
 * 23505). Any other refusal is no collision, whether or not the address has an account: it must answer the same.
 */
async function collidedWith(
  db: Database,
  err: unknown,
  email: string,
): Promise<{ id: string; email: string; name: string } | null> {
  if (!isUniqueViolation(err) && codeOf(err) !== 'FAILED_TO_CREATE_USER') return null;
  const { rows } = await db.query<{ id: string; email: string; name: string }>(
    'SELECT id, email, name FROM users WHERE lower(email) = lower($1)',
    [email],
  );
  return rows[0] ?? null;
}

/** Whether an account has this address (case aside). */
async function accountExists(db: Database, email: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM users WHERE lower(email) = lower($1)', [email]);
  return rows.length > 0;
}

/** Better Auth's error codes mapped onto our catalogue; anything else is rethrown as is (500 / 503 upstream). */
function translate(err: unknown): unknown {
  if (!(err instanceof APIError)) return err;
  const code = codeOf(err) ?? '';
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
    case 'EMAIL_NOT_VERIFIED':
      return new AppError('EMAIL_NOT_VERIFIED', undefined, {}, { cause: err });
    case 'INVALID_EMAIL':
    case 'VALIDATION_ERROR': {
      // VALIDATION_ERROR is its body schema's refusal, naming the field first: "[body.email] Invalid email address".
      const field = code === 'INVALID_EMAIL' ? 'email' : /^\[body\.(\w+)\]/.exec(err.message)?.[1];
      const message = field === 'email' ? 'email must be a valid email address' : err.message || undefined;
      return new AppError('VALIDATION_FAILED', message, field ? { field } : {}, { cause: err });
    }
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
