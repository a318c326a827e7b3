import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { Authenticator, SessionStore } from '../../authenticator/index.js';
import type { PasskeyInfo, PasskeyService, RequestMeta } from '../../passkeys/index.js';
import { ErrorResponse, TokenResponse } from './auth.schemas.js';
import {
  AuthenticateOptionsQuery,
  AuthenticatePasskeyBody,
  CreationOptions,
  PasskeyListResponse,
  PasskeyParams,
  PasskeyResponse,
  RegisterPasskeyBody,
  RenamePasskeyBody,
  RequestOptions,
  SuccessResponse,
} from './passkeys.schemas.js';
import { authOf, requireAuth } from './require-auth.js';

export interface PasskeyRoutesDeps {
  passkeys: PasskeyService;
  authenticator: Authenticator;
  sessions: SessionStore;
  /** Sensitive-operation guard (recent sign-in or a TOTP code), run after sign-in: deleting a passkey needs it. */
  recentAuth: preHandlerAsyncHookHandler;
  /** Session lifetime, for the token's expiry when the session row is not readable back (it always is). */
  sessionExpiresIn: number;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
const tags = ['passkeys'];
const bearer = [{ bearer: [] }];

/**
 * The design's passkey routes. The ceremony routes exist under both /auth/* and /api/auth/* because the design's
 * client uses both; these static routes take precedence over the /api/auth/* mount, which still serves Better Auth's
 * own /api/auth/passkey/* routes.
 */
export async function passkeyRoutes(app: FastifyInstance, deps: PasskeyRoutesDeps): Promise<void> {
  const { passkeys, authenticator, sessions } = deps;
  const signedIn = requireAuth(authenticator);

  app.post(
    '/auth/passkey/register/options',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Passkey registration options for the signed-in user (pass to startRegistration)',
        tags,
        security: bearer,
        response: { 200: CreationOptions, ...errors(401, 403, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId, email, name } = authOf(request);
      return passkeys.registrationOptions({ userId, sessionId, email, name });
    },
  );

  for (const url of ['/api/auth/passkey/register', '/auth/passkey/register']) {
    app.post<{ Body: RegisterPasskeyBody }>(
      url,
      {
        preHandler: signedIn,
        schema: {
          summary: 'Store the passkey startRegistration() created',
          tags,
          security: bearer,
          body: RegisterPasskeyBody,
          response: { 200: PasskeyResponse, ...errors(400, 401, 403, 409, 413, 415, 503) },
        },
      },
      async (request) => {
        const { userId, sessionId, email, name } = authOf(request);
        const stored = await passkeys.register(
          { userId, sessionId, email, name },
          request.body.credential,
          request.body.name?.trim() ?? null,
          metaOf(request),
        );
        return { success: true as const, passkey: view(stored) };
      },
    );
  }

  for (const url of ['/api/auth/passkey/authenticate/options', '/auth/passkey/authenticate/options']) {
    app.get<{ Querystring: AuthenticateOptionsQuery }>(
      url,
      {
        schema: {
          summary: 'Passkey sign-in options (pass to startAuthentication); usernameless unless ?email= narrows them',
          tags,
          querystring: AuthenticateOptionsQuery,
          response: { 200: RequestOptions, ...errors(400, 503) },
        },
      },
      async (request) => passkeys.authenticationOptions(request.query.email?.trim().toLowerCase()),
    );
  }

  for (const url of ['/auth/passkey/authenticate', '/api/auth/passkey/authenticate']) {
    app.post<{ Body: AuthenticatePasskeyBody }>(
      url,
      {
        schema: {
          summary: 'Sign in with the passkey startAuthentication() used: the same token and session as /auth/login',
          tags,
          body: AuthenticatePasskeyBody,
          response: { 200: TokenResponse, ...errors(400, 401, 413, 415, 503) },
        },
      },
      async (request, reply) => {
        const { userId, sessionId } = await passkeys.authenticate(request.body.credential, metaOf(request));
        const session = await sessions.findActive(sessionId);
        const expiresAt = session?.expiresAt ?? new Date(Date.now() + deps.sessionExpiresIn * 1000);
        const token = authenticator.issueToken(userId, sessionId, expiresAt);
        reply.header('x-auth-token', token);
        return { success: true as const, token, userId };
      },
    );
  }

  app.get(
    '/auth/passkeys',
    {
      preHandler: signedIn,
      schema: {
        summary: "The signed-in user's passkeys",
        tags,
        security: bearer,
        response: { 200: PasskeyListResponse, ...errors(401, 503) },
      },
    },
    async (request) => ({
      success: true as const,
      passkeys: (await passkeys.list(authOf(request).userId)).map(view),
    }),
  );

  app.patch<{ Params: PasskeyParams; Body: RenamePasskeyBody }>(
    '/auth/passkeys/:id',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Rename one of your passkeys',
        tags,
        security: bearer,
        params: PasskeyParams,
        body: RenamePasskeyBody,
        response: { 200: PasskeyResponse, ...errors(400, 401, 404, 415, 503) },
      },
    },
    async (request) => {
      const renamed = await passkeys.rename(authOf(request).userId, request.params.id, request.body.name.trim());
      return { success: true as const, passkey: view(renamed) };
    },
  );

  app.delete<{ Params: PasskeyParams }>(
    '/auth/passkeys/:id',
    {
      preHandler: [signedIn, deps.recentAuth],
      schema: {
        summary: 'Delete one of your passkeys (refused for the last one of an account without a password)',
        tags,
        security: bearer,
        params: PasskeyParams,
        response: { 200: SuccessResponse, ...errors(401, 403, 404, 409, 503) },
      },
    },
    async (request) => {
      await passkeys.remove(authOf(request).userId, request.params.id, metaOf(request));
      return { success: true as const };
    },
  );
}

function metaOf(request: FastifyRequest): RequestMeta {
  const ua = request.headers['user-agent'];
  return { ip: request.ip, userAgent: typeof ua === 'string' ? ua : null, channel: 'rest' };
}

const view = (p: PasskeyInfo) => ({ ...p, createdAt: p.createdAt.toISOString() });
