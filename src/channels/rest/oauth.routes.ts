import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RecentAuth } from '../../account/index.js';
import { CODE_CHALLENGE_PATTERN, type ExchangeCodes } from '../../accounts/index.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import {
  type AuthEngine,
  CLIENT_IP_HEADER,
  clientIpOf,
  configuredProviders,
  OAUTH_COMPLETE_PATH,
} from '../../auth/index.js';
import type { Authenticator, SessionStore } from '../../authenticator/index.js';
import { type Config, usesSecureCookies } from '../../config/index.js';
import type { Database } from '../../db/index.js';
import { AppError, type ErrorCode } from '../../errors/index.js';
import { ErrorResponse, TokenResponse } from './auth.schemas.js';
import type { BrowserFinish } from './browser-finish.js';
import { authOf, requireAuth } from './require-auth.js';
import { reauthCode } from './require-recent-auth.js';
import { clearSessionCookies } from './session-cookies.js';
import {
  AccountsResponse,
  CompleteQuery,
  ExchangeBody,
  LinkedQuery,
  LinkResponse,
  ProviderIdParams,
  ProviderParams,
  ProvidersResponse,
  StartQuery,
  SuccessResponse,
} from './sign-in-methods.schemas.js';

export interface OAuthRoutesDeps {
  config: Config;
  db: Database;
  engine: AuthEngine;
  authenticator: Authenticator;
  sessions: SessionStore;
  audit: AuditLog;
  codes: ExchangeCodes;
  finish: BrowserFinish;
  /** Linking a provider adds a way in: it needs a recent sign-in (or X-2FA-Code), as adding a passkey does. */
  recentAuth: RecentAuth;
  /** Anonymous users link a provider to keep their account and have no other way to sign in again. */
  isAnonymous(userId: string): Promise<boolean>;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));

/**
 * Better Auth's redirect error codes (?error=...) as our stable ones. A Map, not an object literal: the query value is
 * the client's, and a lookup must not find Object.prototype's members (?error=constructor).
 */
const CALLBACK_ERRORS = new Map<string, ErrorCode>([
  ['state_mismatch', 'OAUTH_STATE_INVALID'],
  ['state_invalid', 'OAUTH_STATE_INVALID'],
  ['state_not_found', 'OAUTH_STATE_INVALID'],
  ['state_security_mismatch', 'OAUTH_STATE_INVALID'],
  ['issuer_mismatch', 'OAUTH_ISSUER_MISMATCH'],
  ['issuer_missing', 'OAUTH_ISSUER_MISMATCH'],
  ['account_not_linked', 'OAUTH_ACCOUNT_NOT_LINKED'],
  ['unable_to_link_account', 'OAUTH_LINK_REFUSED'],
  ['email_does_not_match', 'OAUTH_LINK_REFUSED'],
  ['account_already_linked_to_different_user', 'OAUTH_LINK_REFUSED'],
]);

/**
 * The code challenge of an OAuth sign-in, kept in the browser from its start to its completion (the provider's round
 * trip carries no parameter of ours): only the completion route is sent it, and it lives as long as a state cookie.
 */
const CHALLENGE_COOKIE = 'gateway.oauth_challenge';
const CHALLENGE_IN_COOKIE = /(?:^|;\s*)gateway\.oauth_challenge=([^;]*)/;
const CHALLENGE_SHAPE = new RegExp(CODE_CHALLENGE_PATTERN);

function challengeOfCookie(header: string | undefined): string | null {
  const value = CHALLENGE_IN_COOKIE.exec(header ?? '')?.[1] ?? '';
  return CHALLENGE_SHAPE.test(value) ? value : null;
}

/** A session Better Auth created for this callback: older ones do not mint codes (a stale cookie is not a sign-in). */
const FRESH_SESSION_SECONDS = 600;

/**
 * OAuth / OpenID Connect sign-in, completion, code exchange, and linking. Better Auth runs the protocol (PKCE, state
 * cookie, token exchange, id token checks) behind /api/auth/callback/<id>; these routes start it and end it.
 */
export async function oauthRoutes(app: FastifyInstance, deps: OAuthRoutesDeps): Promise<void> {
  const { config, db, engine, authenticator, sessions, audit, codes, finish } = deps;
  const providers = configuredProviders(config);
  const known = new Set(providers.map((p) => p.id));
  const signedIn = requireAuth(authenticator);
  const base = config.server.base_url;
  const secure = usesSecureCookies(config);
  // The completion route's public path (base_url may carry a prefix a proxy strips).
  const completePath = `${new URL(base).pathname.replace(/\/$/, '')}${OAUTH_COMPLETE_PATH}`;
  const challengeCookie = (value: string | null) => {
    const attributes = `Path=${completePath}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
    return `${CHALLENGE_COOKIE}=${value ?? ''}; Max-Age=${value ? 600 : 0}; ${attributes}`;
  };

  const engineHeaders = (request: FastifyRequest) => {
    const headers = new Headers({ [CLIENT_IP_HEADER]: clientIpOf(request) });
    const ua = request.headers['user-agent'];
    if (typeof ua === 'string') headers.set('user-agent', ua);
    return headers;
  };
  const requireProvider = (id: string) => {
    if (!known.has(id)) throw new AppError('OAUTH_PROVIDER_UNKNOWN');
  };

  app.get(
    '/auth/oauth/providers',
    {
      schema: {
        summary: 'The configured OAuth / OIDC providers',
        tags: ['oauth'],
        response: { 200: ProvidersResponse },
      },
    },
    async () => ({
      success: true as const,
      providers: providers.map((p) => ({ ...p, authorizeUrl: `${base}/auth/oauth/${p.id}` })),
    }),
  );

  app.get<{ Params: ProviderParams; Querystring: StartQuery }>(
    '/auth/oauth/:provider',
    {
      schema: {
        summary: "Start signing in with a provider: redirects the browser to the provider's authorization page",
        tags: ['oauth'],
        params: ProviderParams,
        querystring: StartQuery,
        response: { ...errors(400, 404, 503) },
      },
    },
    async (request, reply) => {
      requireProvider(request.params.provider);
      const { url, cookies } = await engine.methods.startOAuth(request.params.provider, engineHeaders(request));
      // Set, or cleared: a challenge left by an abandoned sign-in must not bind this one.
      const challenge = challengeCookie(request.query.codeChallenge ?? null);
      reply.header('set-cookie', [...cookies, challenge]).header('cache-control', 'no-store');
      return reply.redirect(url, 302);
    },
  );

  app.get<{ Querystring: CompleteQuery }>(
    OAUTH_COMPLETE_PATH,
    {
      schema: {
        summary: 'Where Better Auth returns the browser: mints the one-time code and redirects to oauth.redirect_url',
        tags: ['oauth'],
        querystring: CompleteQuery,
        response: {
          200: T.Object({ success: T.Literal(true), code: T.String() }),
          ...errors(400, 401, 409, 503),
        },
      },
    },
    async (request, reply) => {
      clearSessionCookies(reply, secure);
      const challenge = challengeOfCookie(request.headers.cookie);
      reply.header('set-cookie', challengeCookie(null));
      if (request.query.error !== undefined) {
        const code = CALLBACK_ERRORS.get(request.query.error) ?? 'OAUTH_FAILED';
        await audit.record({
          event: 'login.failure',
          ...restOrigin(request),
          // 64 characters, not code units: a cut through a surrogate pair (an emoji) would leave half of it.
          details: {
            method: 'oauth',
            reason: code,
            provider_error: Array.from(request.query.error).slice(0, 64).join(''),
          },
        });
        return finish.failure(reply, code);
      }
      const sessionId = request.headers.cookie ? await engine.sessionIdFromHeaders(toHeaders(request.headers)) : null;
      const { rows } = sessionId
        ? await db.query<{ user_id: string }>(
            `SELECT user_id FROM sessions
              WHERE id = $1 AND expires_at > now() AND created_at > now() - make_interval(secs => $2)`,
            [sessionId, FRESH_SESSION_SECONDS],
          )
        : { rows: [] };
      const userId = rows[0]?.user_id;
      if (!sessionId || !userId) return finish.failure(reply, 'OAUTH_FAILED');
      // Once per session, and not for a session another sign-in or sign-up already recorded (those through /api/auth
      // set the same cookie): this route may be opened again with it.
      const { rows: recorded } = await db.query(
        `SELECT 1 FROM auth_audit_log
          WHERE user_id = $1 AND session_id = $2 AND event IN ('login.success', 'signup') LIMIT 1`,
        [userId, sessionId],
      );
      if (recorded.length === 0) {
        await audit.record({
          event: 'login.success',
          userId,
          sessionId,
          ...restOrigin(request),
          details: { method: 'oauth' },
        });
      }
      return finish.success(reply, { sessionId, userId }, challenge);
    },
  );

  app.get<{ Querystring: LinkedQuery }>(
    '/auth/oauth/linked',
    {
      schema: {
        summary: 'Where Better Auth returns the browser after linking: redirects to oauth.redirect_url?linked=<id>',
        tags: ['oauth'],
        querystring: LinkedQuery,
        response: { 200: T.Object({ success: T.Literal(true), linked: T.String() }), ...errors(400) },
      },
    },
    async (request, reply) => finish.linked(reply, request.query.provider ?? ''),
  );

  app.post<{ Body: ExchangeBody }>(
    '/auth/oauth/exchange',
    {
      schema: {
        summary: 'Trade a one-time code (OAuth or magic link) for the session token',
        tags: ['oauth'],
        body: ExchangeBody,
        response: { 200: TokenResponse, ...errors(400, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      const found = await codes.consume(request.body.code, request.body.codeVerifier);
      const session = found ? await sessions.findActive(found.sessionId) : null;
      if (!found || !session || session.userId !== found.userId) throw new AppError('EXCHANGE_CODE_INVALID');
      return {
        success: true as const,
        userId: session.userId,
        token: authenticator.issueToken(session.userId, session.id, session.expiresAt),
      };
    },
  );

  // A provider account linked here signs in to this user from then on (a fresh session, which passes every
  // recent-authentication check, and is not asked for the gateway's 2FA): a stolen older token must not link one.
  const linkAllowed = async (request: FastifyRequest) => {
    const { userId, sessionId } = authOf(request);
    if (await deps.isAnonymous(userId)) return;
    await deps.recentAuth.assert(userId, sessionId, reauthCode(request));
  };

  app.post<{ Params: ProviderParams }>(
    '/auth/oauth/link/:provider',
    {
      preHandler: [signedIn, linkAllowed],
      schema: {
        summary: "Start linking a provider to the signed-in account: returns the provider's URL (and a state cookie)",
        tags: ['oauth'],
        security: [{ bearer: [] }],
        params: ProviderParams,
        response: { 200: LinkResponse, ...errors(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      requireProvider(request.params.provider);
      const auth = authOf(request);
      if (!auth.sessionId) throw new AppError('AUTH_REQUIRED');
      const { url, cookies } = await engine.methods.startLink(
        request.params.provider,
        auth.sessionId,
        engineHeaders(request),
      );
      reply.header('set-cookie', cookies).header('cache-control', 'no-store');
      return { success: true as const, url };
    },
  );

  app.get(
    '/auth/oauth/accounts',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Provider accounts linked to the signed-in user',
        tags: ['oauth'],
        security: [{ bearer: [] }],
        response: { 200: AccountsResponse, ...errors(401, 503) },
      },
    },
    async (request) => ({
      success: true as const,
      accounts: await engine.methods.listAccounts(authOf(request).userId),
    }),
  );

  app.delete<{ Params: ProviderIdParams }>(
    '/auth/oauth/accounts/:providerId',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Unlink a provider from the signed-in user (refused for the last way to sign in)',
        tags: ['oauth'],
        security: [{ bearer: [] }],
        params: ProviderIdParams,
        response: { 200: SuccessResponse, ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      if (!auth.sessionId) throw new AppError('AUTH_REQUIRED');
      await engine.methods.unlink(request.params.providerId, auth.userId, auth.sessionId);
      await audit.record({
        event: 'channel.unlinked',
        userId: auth.userId,
        sessionId: auth.sessionId,
        ...restOrigin(request),
        details: { provider: request.params.providerId },
      });
      return { success: true as const };
    },
  );
}

function toHeaders(headers: Record<string, string | string[] | undefined>): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return out;
}
