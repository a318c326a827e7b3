import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RecentAuth } from '../../account/index.js';
import type { AnonymousUsers } from '../../accounts/index.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import type { AuthEngine } from '../../auth/index.js';
import { CLIENT_IP_HEADER, clientIpOf } from '../../auth/index.js';
import { type Authenticator, hasSessionCookie, type SessionStore } from '../../authenticator/index.js';
import { type Config, usesSecureCookies } from '../../config/index.js';
import { AppError } from '../../errors/index.js';
import {
  ErrorResponse,
  HealthResponse,
  type LoginBody,
  makeLoginBody,
  makeRegisterBody,
  type RegisterBody,
  SessionResponse,
  TokenResponse,
  TwoFactorRequiredResponse,
  VerificationRequiredResponse,
} from './auth.schemas.js';
import { authOf, carryRenewal, requireAuth } from './require-auth.js';
import { reauthCode } from './require-recent-auth.js';
import { clearSessionCookies } from './session-cookies.js';

export interface AuthRoutesDeps {
  config: Config;
  engine: AuthEngine;
  authenticator: Authenticator;
  sessions: SessionStore;
  audit: AuditLog;
  health(): Promise<{ kind: string; reachable: boolean }>;
  version: string;
  /** Registering with an anonymous user's token upgrades that user in place (src/accounts/). */
  anonymous?: AnonymousUsers;
  /** A user a passkey made permanent adds a password only after a recent sign-in, as it would add any way in. */
  recentAuth: RecentAuth;
  /**
   * The email a sign-up sends (the verification link, or a notice to the owner of an address that has an account),
   * for an upgrade while verification is required. Returns at once: the email is prepared after the answer.
   */
  sendVerificationEmail?(user: { id: string; email: string; name: string }): Promise<void>;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));

/** The design's simplified routes: register, login, logout, session, health. */
export async function authRoutes(app: FastifyInstance, deps: AuthRoutesDeps): Promise<void> {
  const { config, engine, authenticator, sessions, audit } = deps;
  const password = { min: config.auth.password.min_length, max: config.auth.password.max_length };
  const secureCookies = usesSecureCookies(config);
  const startedAt = Date.now();
  const signedIn = requireAuth(authenticator);

  /** Headers Better Auth sees for a sign-in on our routes: the client's IP (from Fastify) and user agent. */
  const engineHeaders = (request: { ip: string; headers: Record<string, unknown> }) => {
    const headers = new Headers({ [CLIENT_IP_HEADER]: clientIpOf(request) });
    const ua = request.headers['user-agent'];
    if (typeof ua === 'string') headers.set('user-agent', ua);
    const device = request.headers['x-device-id']; // set by the access plugin: files the session under its device
    if (typeof device === 'string') headers.set('x-device-id', device);
    return headers;
  };

  /** The token of a session just made or just checked: it expires with the session. */
  const tokenFor = (session: { userId: string; sessionId: string; expiresAt: Date }) =>
    authenticator.issueToken(session.userId, session.sessionId, session.expiresAt);

  app.post<{ Body: RegisterBody }>(
    '/auth/register',
    {
      // Not endsNoSession: with an anonymous user's token, registering changes that user's email and name, which
      // cached authentications of its sessions hold; the answer waits until this process has dropped them.
      schema: {
        summary: 'Register with email and password, and sign in',
        tags: ['auth'],
        body: makeRegisterBody(password),
        response: {
          201: T.Union([TokenResponse, VerificationRequiredResponse]),
          ...errors(400, 401, 403, 409, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { email, password: pw, name } = request.body;
      // The schema counts code points, the hasher (and Better Auth) UTF-16 units: up to twice as many pass as astral
      // characters. Refused here, before the address is looked at, so the answer is the same whatever the address.
      if (pw.length > password.max) {
        throw new AppError('VALIDATION_FAILED', 'Password too long', { field: 'password' });
      }
      if (request.headers.authorization !== undefined && deps.anonymous) {
        return upgradeAnonymous(request, reply, deps.anonymous);
      }
      const created = await engine.signUpEmail(
        { email: normalizeEmail(email), password: pw, name: (name ?? '').trim() },
        engineHeaders(request),
      );
      const { userId, sessionId } = created;
      // auth.require_email_verification: no session (and no token) until the emailed link is followed.
      if (sessionId === null) return reply.status(201).send({ success: true, userId, verificationRequired: true });
      await audit.record({
        event: 'signup',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { method: 'password' },
      });
      return reply.status(201).send({ success: true, userId, token: tokenFor({ ...created, sessionId }) });
    },
  );

  /**
   * Registering while holding an anonymous user's token: that user gets the email and password, keeping its id,
   * sessions, links and data. So does one a passkey made permanent, who has no address or password yet either (the
   * passkey may even have come while an upgrade waited for its link). Any other token is refused rather than
   * silently creating a second account.
   *
   * With auth.require_email_verification the upgrade waits for the emailed link, and the answer, its cost and the
   * user's state until then are the same whether or not the address has an account: an immediate upgrade (or an
   * EMAIL_TAKEN) would let one anonymous token test any number of addresses, through the status, the session's email
   * or a second attempt's NOT_ANONYMOUS. The address gets the link, or its owner a notice of the attempt (src/account/).
   */
  const upgradeAnonymous = async (
    request: FastifyRequest<{ Body: RegisterBody }>,
    reply: FastifyReply,
    anonymous: AnonymousUsers,
  ) => {
    const context = await authenticator.authenticateRequest(request);
    carryRenewal(reply, context);
    if (!context?.sessionId) throw new AppError('INVALID_TOKEN');
    if (!(await anonymous.mayUpgrade(context.userId))) throw new AppError('NOT_ANONYMOUS');
    // Still anonymous: the token is the only way in, so whoever holds it owns the account anyway. After a passkey it
    // is not: a password is a second way in, and an old stolen token must not add one (REAUTH_REQUIRED).
    if (!(await anonymous.isAnonymous(context.userId))) {
      await deps.recentAuth.assert(context.userId, context.sessionId, reauthCode(request));
    }
    const { email, password: pw, name } = request.body;
    const account = { email: normalizeEmail(email), password: pw, name: (name ?? '').trim() };
    const { userId, sessionId, expiresAt } = context;
    const pending = config.auth.require_email_verification;
    if (pending) await anonymous.requestUpgrade(userId, account);
    else await anonymous.upgradeWithPassword(userId, account);
    await audit.record({
      event: 'signup',
      userId,
      sessionId,
      ...restOrigin(request),
      details: { method: 'password', upgraded: 'anonymous', ...(pending && { verificationRequired: true }) },
    });
    // The session the anonymous user already had goes on (its data is theirs), as an anonymous one until the link.
    if (pending) await deps.sendVerificationEmail?.({ id: userId, email: account.email, name: account.name });
    const token = tokenFor({ userId, sessionId, expiresAt: expiresAt ?? new Date() });
    return reply.status(201).send({ success: true, userId, token });
  };

  app.post<{ Body: LoginBody }>(
    '/auth/login',
    {
      config: { endsNoSession: true },
      schema: {
        summary: 'Sign in with email and password',
        tags: ['auth'],
        body: makeLoginBody(password),
        response: { 200: T.Union([TokenResponse, TwoFactorRequiredResponse]), ...errors(400, 401, 403, 413, 415, 503) },
      },
    },
    async (request) => {
      const { email, password: pw } = request.body;
      let session: Awaited<ReturnType<AuthEngine['signInEmail']>>;
      try {
        session = await engine.signInEmail(
          { email: normalizeEmail(email), password: pw },
          engineHeaders(request),
          restOrigin(request),
        );
      } catch (err) {
        const reason = err instanceof AppError ? err.code : 'error';
        await audit.record({ event: 'login.failure', ...restOrigin(request), details: { method: 'password', reason } });
        throw err;
      }
      // An account with 2FA: the password was right; POST /auth/2fa/verify completes the sign-in.
      if ('twoFactorRequired' in session) return { success: true as const, ...session };
      const { userId, sessionId, audited } = session;
      const success = {
        event: 'login.success',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { method: 'password' },
      } as const;
      // The gateway's own sign-in wrote its row with the session (password-sign-in.ts); Better Auth's path did not.
      if (audited) audit.noteWritten(success);
      else await audit.record(success);
      return { success: true as const, userId, token: tokenFor(session) };
    },
  );

  app.post(
    '/auth/logout',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Sign out: ends the session; its token stops working at once',
        tags: ['auth'],
        security: [{ bearer: [] }],
        response: { 200: { type: 'object', properties: { success: { type: 'boolean' } } }, ...errors(401, 503) },
      },
    },
    async (request, reply) => {
      const { sessionId, userId } = authOf(request);
      // A bearer is the credential over a cookie, so it names the session ended: the browser's cookie is cleared only
      // when it names that one (or none that lives), never while its own session goes on (as on /api/auth/sign-out).
      const { cookie, authorization } = request.headers;
      const cookieSessionId =
        authorization !== undefined && cookie !== undefined && hasSessionCookie(cookie)
          ? await engine.sessionIdFromHeaders(new Headers({ cookie }))
          : sessionId;
      if (sessionId) await sessions.delete(sessionId);
      await audit.record({ event: 'logout', userId, sessionId, ...restOrigin(request) });
      const endedCookieSession = cookieSessionId === null || cookieSessionId === sessionId;
      if (cookie && endedCookieSession) clearSessionCookies(reply, secureCookies);
      return { success: true };
    },
  );

  app.get(
    '/auth/session',
    {
      preHandler: signedIn,
      schema: {
        summary: 'The signed-in user, session and license',
        tags: ['auth'],
        security: [{ bearer: [] }],
        response: { 200: SessionResponse, ...errors(401, 503) },
      },
    },
    // Synchronous: the hot path of every client, and a promise here costs the async-hooks bookkeeping (require-auth.ts).
    (request) => {
      const auth = authOf(request);
      return {
        success: true as const,
        user: { id: auth.userId, email: auth.email, name: auth.name },
        session: { id: auth.sessionId ?? '', expiresAt: (auth.expiresAt ?? new Date(0)).toISOString() },
        license: auth.license,
      };
    },
  );

  app.get(
    '/auth/health',
    {
      schema: {
        summary: 'Health: database reachable, version, uptime (503 when the database is not)',
        tags: ['auth'],
        // 503 is also the gateway's error envelope: a probe that arrives once the process is shutting down.
        response: { 200: HealthResponse, 503: T.Union([HealthResponse, ErrorResponse]) },
      },
    },
    async (_request, reply) => {
      const database = await deps.health();
      const body = {
        success: database.reachable,
        status: database.reachable ? ('ok' as const) : ('unavailable' as const),
        version: deps.version,
        uptime: Math.round((Date.now() - startedAt) / 1000),
        database,
        ...(database.reachable
          ? {}
          : { error: { code: 'DATABASE_UNAVAILABLE', message: 'The database is unavailable; try again shortly.' } }),
      };
      return reply.status(database.reachable ? 200 : 503).send(body);
    },
  );
}

/** One account per address: case and surrounding spaces do not make a different account. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
