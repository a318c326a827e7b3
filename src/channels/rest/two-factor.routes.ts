import type { FastifyInstance } from 'fastify';
import type { RecentAuth } from '../../account/index.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import { type AuthEngine, CLIENT_IP_HEADER } from '../../auth/index.js';
import type { Authenticator, SessionStore } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import { AppError } from '../../errors/index.js';
import type { PasswordHasher } from '../../passwords/index.js';

import {
  CodeBody,
  type DisableBody,
  EnableResponse,
  makeDisableBody,
  makePasswordBody,
  type PasswordBody,
  SuccessResponse,
  VerifyBody,
} from './account.schemas.js';
import { ErrorResponse, TokenResponse } from './auth.schemas.js';
import { authOf, requireAuth } from './require-auth.js';
import { reauthCode } from './require-recent-auth.js';

export interface TwoFactorRoutesDeps {
  config: Config;
  engine: AuthEngine;
  authenticator: Authenticator;
  sessions: SessionStore;
  audit: AuditLog;
  recentAuth: RecentAuth;
  hasher: PasswordHasher;
  /** The user's password hash (null without a password), to check `password` on disable. */
  passwordHash(userId: string): Promise<string | null>;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
const CHALLENGE_COOKIE = /(?:^|;\s*)(?:__Secure-)?better-auth\.two_factor=([^;]+)/;

/** TOTP two-factor: enrolment, confirmation, disabling, and the second step of a sign-in. */
export async function twoFactorRoutes(app: FastifyInstance, deps: TwoFactorRoutesDeps): Promise<void> {
  const { engine, audit } = deps;
  const password = { max: deps.config.auth.password.max_length };
  const signedIn = requireAuth(deps.authenticator);

  app.post<{ Body: PasswordBody }>(
    '/auth/2fa/enable',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Start 2FA enrolment: an otpauth URI and backup codes (inactive until /auth/2fa/confirm)',
        tags: ['two-factor'],
        security: [{ bearer: [] }],
        body: makePasswordBody(password),
        response: { 200: EnableResponse, ...errors(400, 401, 409, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId } = authOf(request);
      if (await engine.twoFactor.isEnabled(userId)) throw new AppError('TWO_FACTOR_ALREADY_ENABLED');
      const sessionToken = sessionId ? await engine.sessionToken(sessionId) : null;
      if (!sessionToken) throw new AppError('INVALID_TOKEN');
      const enrolment = await engine.twoFactor.enable(sessionToken, request.body.password);
      return { success: true as const, ...enrolment };
    },
  );

  app.post<{ Body: CodeBody }>(
    '/auth/2fa/confirm',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Confirm 2FA enrolment with a first code from the authenticator app: 2FA is active from now on',
        tags: ['two-factor'],
        security: [{ bearer: [] }],
        body: CodeBody,
        response: { 200: SuccessResponse, ...errors(400, 401, 429, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId } = authOf(request);
      const result = await engine.twoFactor.confirm(userId, request.body.code);
      if (result === 'not_enabled') throw new AppError('TWO_FACTOR_NOT_ENABLED', 'No 2FA enrolment is pending.');
      if (result === 'locked') throw new AppError('TWO_FACTOR_LOCKED');
      if (result === 'invalid') {
        await audit.record({
          event: 'twofactor.failed',
          userId,
          sessionId,
          ...restOrigin(request),
          details: { step: 'confirm' },
        });
        throw new AppError('TWO_FACTOR_INVALID_CODE');
      }
      await audit.record({ event: 'twofactor.enabled', userId, sessionId, ...restOrigin(request) });
      return { success: true as const };
    },
  );

  app.post<{ Body: DisableBody }>(
    '/auth/2fa/disable',
    {
      preHandler: signedIn,
      schema: {
        summary: 'Turn 2FA off: with a current code, or with the password and a recent sign-in',
        tags: ['two-factor'],
        security: [{ bearer: [] }],
        body: makeDisableBody(password),
        response: { 200: SuccessResponse, ...errors(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId } = authOf(request);
      const { code, password: pw } = request.body;
      if (!(await engine.twoFactor.isEnabled(userId))) throw new AppError('TWO_FACTOR_NOT_ENABLED');
      if (code) {
        // A current code is both the proof and the re-authentication.
        await deps.recentAuth.assert(userId, null, code).catch(async (err) => {
          await audit.record({
            event: 'twofactor.failed',
            userId,
            sessionId,
            ...restOrigin(request),
            details: { step: 'disable' },
          });
          throw err;
        });
      } else if (pw) {
        const hash = await deps.passwordHash(userId);
        if (!hash || !(await deps.hasher.verify(hash, pw))) {
          throw new AppError('INVALID_PASSWORD', undefined, { field: 'password' });
        }
        await deps.recentAuth.assert(userId, sessionId, reauthCode(request));
      } else {
        throw new AppError('VALIDATION_FAILED', 'Send code or password.', { field: 'code' });
      }
      await engine.twoFactor.disable(userId);
      await audit.record({ event: 'twofactor.disabled', userId, sessionId, ...restOrigin(request) });
      return { success: true as const };
    },
  );

  app.post<{ Body: VerifyBody }>(
    '/auth/2fa/verify',
    {
      schema: {
        summary: 'Second step of a sign-in: a TOTP or backup code for the challengeToken the login answered with',
        tags: ['two-factor'],
        body: VerifyBody,
        response: { 200: TokenResponse, ...errors(400, 401, 429, 503) },
      },
    },
    async (request) => {
      const cookie = CHALLENGE_COOKIE.exec(request.headers.cookie ?? '')?.[1];
      const challenge = request.body.challengeToken ?? (cookie ? decodeURIComponent(cookie) : undefined);
      if (!challenge) throw new AppError('TWO_FACTOR_CHALLENGE_INVALID');
      const challengeUser = await engine.twoFactor.challengeUser(challenge);
      const headers = new Headers({ [CLIENT_IP_HEADER]: request.ip });
      const ua = request.headers['user-agent'];
      if (typeof ua === 'string') headers.set('user-agent', ua);
      let verified: Awaited<ReturnType<AuthEngine['twoFactor']['verifyChallenge']>>;
      try {
        verified = await engine.twoFactor.verifyChallenge(challenge, request.body.code, headers);
      } catch (err) {
        if (err instanceof AppError) {
          const event = err.code === 'TWO_FACTOR_LOCKED' ? 'lockout' : 'twofactor.failed';
          await audit.record({ event, userId: challengeUser, ...restOrigin(request), details: { reason: err.code } });
        }
        throw err;
      }
      const { userId, sessionId } = await engine.sessionOfToken(verified.sessionToken);
      await audit.record({
        event: 'twofactor.used',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { method: verified.method },
      });
      await audit.record({
        event: 'login.success',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { method: 'password', secondFactor: verified.method },
      });
      const session = await deps.sessions.findActive(sessionId);
      if (!session) throw new AppError('TWO_FACTOR_CHALLENGE_INVALID');
      return {
        success: true as const,
        userId,
        token: deps.authenticator.issueToken(userId, sessionId, session.expiresAt),
      };
    },
  );
}
