import { AsyncLocalStorage } from 'node:async_hooks';
import { betterAuth } from 'better-auth';
import { APIError } from 'better-auth/api';
import { bearer } from 'better-auth/plugins/bearer';
import { twoFactor } from 'better-auth/plugins/two-factor';
import {
  type CompiledQuery,
  type ControlledTransaction,
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
} from 'kysely';
import { type Config, usesSecureCookies } from '../config/index.js';
import { type Database, isUnavailableError } from '../db/index.js';
import { AppError } from '../errors/index.js';
import { relyingPartyOf } from '../passkeys/index.js';
import type { PasswordHasher } from '../passwords/index.js';
import { bareAddress } from '../ratelimit/client-key.js';
import { generateId } from './ids.js';
import { passkeyPlugin } from './passkey.js';
import { signInMethodOptions } from './sign-in-methods.js';

/** Header that carries Fastify's `request.ip` (which honours trust_proxy) into Better Auth; clients' copies are dropped. */
export const CLIENT_IP_HEADER = 'x-gateway-client-ip';

/**
 * The value for CLIENT_IP_HEADER: the client address as the gateway reads it, without the port or brackets a trusted
 * proxy may write around it. Better Auth cannot parse "203.0.113.7:51234" and would record the session with no address
 * (in development and test it would say 127.0.0.1), and the sign-in guard would judge it without one.
 */
export const clientIpOf = (request: { ip: string }): string => bareAddress(request.ip);

export interface BetterAuthDeps {
  config: Config;
  db: Database;
  hasher: PasswordHasher;
  /** Origins Better Auth trusts; the same list CORS uses. */
  trustedOrigins: string[];
  logger: {
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
    debug(obj: object, msg: string): void;
  };
  /** Account emails and events (src/account): Better Auth decides when, these send and record. */
  accountHooks?: AccountHooks;
  /** Runs around every session Better Auth creates (any sign-in method): may refuse it with an AppError. */
  sessionGuard?: SessionGuardHooks;
}

/** What Better Auth calls for account emails. Each returns at once: sending is deferred (no timing oracle). */
export interface AccountHooks {
  /**
   * A sign-up's email to `user.email`: the verification link, or, when the address already has a verified account
   * or another account, a notice to its owner (src/account/email-verification.ts decides, after the answer).
   */
  sendVerificationEmail(user: { id: string; email: string; name: string }): Promise<void>;
  /**
   * A sign-up for an address that already has an account (`user`): a notice to its owner, never a link. Whoever signs
   * up may not be whoever registered the account; a link would let the address's owner verify the registrant's
   * account, password and all, for them (a pre-hijacked account).
   */
  existingUserSignUp(user: { id: string; email: string; name: string }): Promise<void>;
  /** `emailVerified` false: the link confirms the address too (an unverified account's reset reclaims it). */
  sendPasswordReset(
    user: { id: string; email: string; name: string; emailVerified?: boolean },
    token: string,
  ): Promise<void>;
  passwordReset(user: { id: string; email: string; name: string }): Promise<void>;
}

export interface SessionGuardHooks {
  beforeSession(input: {
    userId: string;
    ip: string | undefined;
    userAgent: string | null;
    /** What the guard checks, when the caller has just read it (saves the guard its own query). */
    user?: { disabled: boolean; ipAllowlist: string[] | null };
  }): Promise<void>;
  afterSession(input: {
    sessionId: string;
    userId: string;
    userAgent: string | null;
    headers: Headers | null;
    /** The caller filed the session under its device in the statement that created it (the password sign-in). */
    deviceFiled?: boolean;
  }): Promise<void>;
}

/** Better Auth answers only its own APIError; ours become one with our code and public message. */
async function asApiError(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    throw new APIError(err.status === 403 ? 'FORBIDDEN' : 'BAD_REQUEST', { code: err.code, message: err.message });
  }
}

/** The first query failure of a call into Better Auth that said the database is unavailable (see surfaceUnavailable). */
const databaseLoss = new AsyncLocalStorage<{ lost?: unknown }>();

function noteLoss(err: unknown): void {
  const watch = databaseLoss.getStore();
  if (watch && watch.lost === undefined && isUnavailableError(err)) watch.lost = err;
}

/**
 * Runs `fn` (a call into Better Auth) and, when one of Better Auth's queries found the database unavailable, throws
 * that query's error in place of a failure, so it is answered as every lost query is (503 DATABASE_UNAVAILABLE with
 * Retry-After). Better Auth catches some of those errors and answers with a refusal of its own (a sign-up's user
 * insert becomes 422 FAILED_TO_CREATE_USER, a 2FA challenge it could not read 401), and a client does not retry a
 * 4xx. `failed` says whether a returned result is a failure (an error Response); a success stands.
 */
export async function surfaceUnavailable<T>(
  fn: () => Promise<T>,
  failed: (result: T) => boolean = () => false,
): Promise<T> {
  const watch: { lost?: unknown } = {};
  let result: T;
  try {
    result = await databaseLoss.run(watch, fn);
  } catch (err) {
    throw watch.lost ?? err;
  }
  if (watch.lost !== undefined && failed(result)) throw watch.lost;
  return result;
}

/** A connection of the watched Kysely: the open transaction, or none (each statement takes one from the pool). */
interface WatchedConnection extends DatabaseConnection {
  trx: ControlledTransaction<unknown> | null;
}

/**
 * The Kysely Better Auth queries through: each statement, as compiled, runs on the gateway's own (`db.kysely`: its
 * pool or PGlite, and its handling of connections and transactions), and a failure is noted for surfaceUnavailable
 * before Better Auth can catch it. Outside surfaceUnavailable the note is not looked at; the cost is a function call
 * per statement. A transaction runs as one of the gateway's Kysely (a controlled transaction on one connection).
 */
function watchedKysely(base: Kysely<unknown>): Kysely<unknown> {
  const watched = <T>(run: Promise<T>): Promise<T> =>
    run.catch((err: unknown) => {
      noteLoss(err);
      throw err;
    });
  const opened = (connection: DatabaseConnection): ControlledTransaction<unknown> => {
    const { trx } = connection as WatchedConnection;
    if (!trx) throw new Error('no transaction is open on this connection');
    (connection as WatchedConnection).trx = null;
    return trx;
  };
  const driver: Driver = {
    init: async () => {},
    async acquireConnection() {
      const connection: WatchedConnection = {
        trx: null,
        executeQuery: <R>(query: CompiledQuery) =>
          watched((connection.trx ?? base).executeQuery(query as CompiledQuery<R>)),
        streamQuery() {
          throw new Error('Better Auth streams no queries');
        },
      };
      return connection;
    },
    releaseConnection: async () => {},
    async beginTransaction(connection, { isolationLevel, accessMode }) {
      let builder = base.startTransaction();
      if (isolationLevel) builder = builder.setIsolationLevel(isolationLevel);
      if (accessMode) builder = builder.setAccessMode(accessMode);
      (connection as WatchedConnection).trx = await watched(builder.execute());
    },
    commitTransaction: (connection) => watched(opened(connection).commit().execute()),
    rollbackTransaction: (connection) => watched(opened(connection).rollback().execute()),
    // The gateway's database owns the pool (db.close()).
    destroy: async () => {},
  };
  return new Kysely({
    dialect: {
      createDriver: () => driver,
      createAdapter: () => new PostgresAdapter(),
      createQueryCompiler: () => new PostgresQueryCompiler(),
      createIntrospector: (db) => new PostgresIntrospector(db),
    },
  });
}

/** Better Auth's log messages about a client's malformed or forged OAuth callback (see the logger below). */
const CLIENT_CAUSED = new Set([
  'State not found',
  'Failed to parse state',
  'INVALID_CALLBACK_REQUEST',
  'No callback URL found',
  'Failed to validate authorization code',
  'Unable to link account - untrusted provider',
]);
/**
 * Better Auth's refusals of an origin or redirect target a client sent (its origin check: `Invalid origin: <origin>`,
 * `Invalid callbackURL: <url>`, ...): answered 403, so a client's mistake, not the gateway's. Logged without the value,
 * which is the client's to choose (a URL may carry anything in its query).
 */
const CLIENT_CAUSED_PREFIX =
  /^(Invalid (?:origin|callbackURL|redirectURL|errorCallbackURL|newUserCallbackURL|redirect URL)): /;
/**
 * The one betterAuth({...}) call. Its models are mapped onto the design's snake_case tables (schema.sql); passwords
 * are hashed by our argon2id hasher; ids take the design's form; rate limiting is ours, not Better Auth's.
 */
export function createBetterAuth({
  config,
  db,
  hasher,
  trustedOrigins,
  logger,
  accountHooks,
  sessionGuard,
}: BetterAuthDeps) {
  const ts = { createdAt: 'created_at', updatedAt: 'updated_at' } as const;
  const methods = signInMethodOptions(config, db, logger);
  return betterAuth({
    appName: 'auth-gateway',
    // Whole, with the mount's path: Better Auth takes a baseURL that has a path as its routes' prefix and ignores
    // basePath, so base_url's own path (a prefix a proxy strips) must come before /api/auth, not replace it.
    baseURL: `${config.server.base_url}/api/auth`,
    basePath: '/api/auth',
    secret: config.auth.secret,
    trustedOrigins,
    database: { db: watchedKysely(db.kysely), type: 'postgres' },
    telemetry: { enabled: false },
    socialProviders: methods.socialProviders,
    onAPIError: methods.onAPIError,
    rateLimit: { enabled: false },
    // Sensitive changes go through our routes, which also demand a recent authentication (POST /auth/password/change,
    // POST /auth/2fa/disable); Better Auth's HTTP copies would skip that. Direct auth.api calls are unaffected. The
    // mount serves a reviewed list of Better Auth's routes only (mount.plugin.ts); these stay off here as well.
    disabledPaths: ['/change-password', '/two-factor/disable'],
    logger: {
      // Better Auth's warnings repeat what the audit log records (e.g. "Invalid password") without a request id.
      level: 'error',
      log(level, message) {
        // Better Auth's messages never contain request bodies; keep them at their level, except the refusals of
        // requests any client can make wrong at will (a callback without or with a forged state or code, an origin or
        // callback URL not trusted): those are answered (a redirect with ?error=, audited at /auth/oauth/complete; a
        // 403), not errors of the gateway, and at error level anyone could flood the alerts.
        const refused = level === 'error' ? CLIENT_CAUSED_PREFIX.exec(message)?.[1] : undefined;
        if (level === 'error' && CLIENT_CAUSED.has(message)) logger.debug({ component: 'better-auth' }, message);
        else if (refused) logger.debug({ component: 'better-auth' }, refused);
        else if (level === 'error') logger.error({ component: 'better-auth' }, message);
        else if (level === 'warn') logger.warn({ component: 'better-auth' }, message);
        else logger.debug({ component: 'better-auth' }, message);
      },
    },
    emailAndPassword: {
      enabled: true,
      autoSignIn: true,
      minPasswordLength: config.auth.password.min_length,
      maxPasswordLength: config.auth.password.max_length,
      password: {
        hash: (password) => hasher.hash(password),
        verify: ({ hash, password }) => hasher.verify(hash, password),
      },
      requireEmailVerification: config.auth.require_email_verification,
      resetPasswordTokenExpiresIn: config.auth.password_reset_ttl,
      revokeSessionsOnPasswordReset: true,
      ...(accountHooks && {
        sendResetPassword: ({ user, token }) => accountHooks.sendPasswordReset(user, token),
        onPasswordReset: ({ user }) => accountHooks.passwordReset(user),
        // A sign-up for an address that has an account, answered like a new one (require_email_verification): the
        // same send path as a new one's link, so both cost the same, and the owner hears of the attempt.
        onExistingUserSignUp: ({ user }) => accountHooks.existingUserSignUp(user),
      }),
    },
    ...(accountHooks && {
      emailVerification: {
        sendOnSignUp: config.auth.require_email_verification,
        // Better Auth's own link (a reusable JWT) is discarded: ours is single-use (src/account/email-verification.ts).
        sendVerificationEmail: ({ user }) => accountHooks.sendVerificationEmail(user),
      },
    }),
    session: {
      modelName: 'sessions',
      expiresIn: config.auth.session.expires_in,
      updateAge: config.auth.session.update_age,
      fields: { userId: 'user_id', expiresAt: 'expires_at', ipAddress: 'ip_address', userAgent: 'user_agent', ...ts },
    },
    user: {
      modelName: 'users',
      fields: { emailVerified: 'email_verified', ...ts },
    },
    account: {
      modelName: 'user_credentials',
      fields: {
        userId: 'user_id',
        accountId: 'account_id',
        providerId: 'provider_id',
        password: 'password_hash',
        accessToken: 'access_token',
        refreshToken: 'refresh_token',
        idToken: 'id_token',
        accessTokenExpiresAt: 'access_token_expires_at',
        refreshTokenExpiresAt: 'refresh_token_expires_at',
        ...ts,
      },
      accountLinking: methods.accountLinking,
    },
    verification: {
      modelName: 'verification_tokens',
      fields: { identifier: 'identifier', value: 'token', expiresAt: 'expires_at', ...ts },
      // Identifiers carry the secrets handed out (reset tokens, 2FA challenges): store only their SHA-256.
      storeIdentifier: 'hashed',
    },
    advanced: {
      database: { generateId: ({ model }) => generateId(model) },
      // ipv6Subnet 128: the whole address. Better Auth's default (64) records an IPv6 client as its /64 network, and
      // the sign-in guard would then judge allow lists by the network, not by the address the Authenticator checks.
      ipAddress: { ipAddressHeaders: [CLIENT_IP_HEADER], ipv6Subnet: 128 },
      useSecureCookies: usesSecureCookies(config),
      // Explicit: left unset, Better Auth skips its origin, callbackURL and CSRF checks whenever NODE_ENV is 'test' or
      // TEST is set (as under the test runner), so a deployment with either would run without them, and no test
      // could see them work.
      disableOriginCheck: false,
      disableCSRFCheck: false,
    },
    plugins: [
      bearer(),
      passkeyPlugin(relyingPartyOf(config), db),
      twoFactor({
        issuer: config.auth.two_factor.issuer,
        twoFactorCookieMaxAge: config.auth.two_factor.challenge_ttl,
        // Better Auth's own device trust ends as soon as it is granted: the gateway's trusted devices are the only ones
        // (src/accounts/devices.ts), and the mount also drops Better Auth's trust_device cookie both ways.
        trustDeviceMaxAge: 0,
        accountLockout: {
          maxFailedAttempts: config.auth.two_factor.lockout_threshold,
          durationSeconds: config.auth.two_factor.lockout_duration,
        },
        schema: {
          user: { fields: { twoFactorEnabled: 'two_factor_enabled' } },
          twoFactor: {
            modelName: 'two_factor',
            fields: {
              userId: 'user_id',
              backupCodes: 'backup_codes',
              failedVerificationCount: 'failed_verification_count',
              lockedUntil: 'locked_until',
            },
          },
        },
      }),
      ...methods.plugins,
    ],
    databaseHooks: {
      ...methods.databaseHooks,
      // Every session, whatever created it (password, passkey, OAuth, magic link, anonymous): the sign-in guard.
      session: sessionGuard && {
        create: {
          before: (session) =>
            asApiError(() =>
              sessionGuard.beforeSession({
                userId: session.userId,
                ip: session.ipAddress || undefined,
                userAgent: session.userAgent || null,
              }),
            ),
          // It may refuse too: the check again once the session exists (sign-in-guard.ts), which undoes it.
          after: (session, ctx) =>
            asApiError(() =>
              sessionGuard.afterSession({
                sessionId: session.id,
                userId: session.userId,
                userAgent: session.userAgent || null,
                headers: ctx?.headers ?? ctx?.request?.headers ?? null,
              }),
            ),
        },
      },
    },
  });
}

export type BetterAuthInstance = ReturnType<typeof createBetterAuth>;
