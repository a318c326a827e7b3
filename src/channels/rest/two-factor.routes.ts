import type { FastifyInstance } from 'fastify';
import type { RecentAuth } from '../../account/index.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import { type AuthEngine, CLIENT_IP_HEADER, clientIpOf } from '../../auth/index.js';
import type { Authenticator, SessionStore } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import { AppError } from '../../errors/index.js';
import type { PasswordHasher } from '../../passwords/index.js';
import { countedPasswordCheck, type LoginThrottle } from '../../ratelimit/login-throttle.js';

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
import { reauthCode, requireRecentAuth } from './require-recent-auth.js';

export interface TwoFactorRoutesDeps {
  config: Config;
  engine: AuthEngine;
  authenticator: Authenticator;
  sessions: SessionStore;
  audit: AuditLog;
  recentAuth: RecentAuth;
  hasher: PasswordHasher;
  /** The per-account lockout of password sign-ins: the password checks here count toward it too. */
  loginThrottle: LoginThrottle;
  /** The user's password hash (null without a password), to check `password` on disable. */
  passwordHash(userId: string): Promise<string | null>;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
/** The sign-in guard's refusals: no verdict on the code, which was right. */
const SIGN_IN_REFUSALS = new Set(['ACCOUNT_DISABLED', 'IP_NOT_ALLOWED']);
const CHALLENGE_COOKIE = /(?:^|;\s*)(?:__Secure-)?better-auth\.two_factor=([^;]+)/;

/** The challenge in Better Auth's cookie; a value that is not valid percent-encoding is none (not a 500). */
function challengeOfCookie(header: string | undefined): string | undefined {
  const raw = CHALLENGE_COOKIE.exec(header ?? '')?.[1];
  if (!raw) return undefined;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** TOTP two-factor: enrolment, confirmation, disabling, and the second step of a sign-in. */
export async function twoFactorRoutes(app: FastifyInstance, deps: TwoFactorRoutesDeps): Promise<void> {
  const { engine, audit } = deps;
  const password = { max: deps.config.auth.password.max_length };
  const signedIn = requireAuth(deps.authenticator);
  // Enrolment hands out a secret that decides every later sign-in: a stolen old session must not get one (nor confirm
  // one), and must not get to try passwords here. So the session's age is checked first, the password after.
  const recent = requireRecentAuth(deps.recentAuth);

  const countedPassword = <T>(email: string, check: () => Promise<T>) =>
    countedPasswordCheck(deps.loginThrottle, email, check);

  app.post<{ Body: PasswordBody }>(
    '/auth/2fa/enable',
    {
      preHandler: [signedIn, recent],
      schema: {
        summary:
          'Start 2FA enrolment (needs the password and a recent sign-in): an otpauth URI and backup codes, inactive ' +
          'until /auth/2fa/confirm',
        tags: ['two-factor'],
        security: [{ bearer: [] }],
        body: makePasswordBody(password),
        response: { 200: EnableResponse, ...errors(400, 401, 403, 409, 429, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId, email } = authOf(request);
      if (await engine.twoFactor.isEnabled(userId)) throw new AppError('TWO_FACTOR_ALREADY_ENABLED');
      const sessionToken = sessionId ? await engine.sessionToken(sessionId) : null;
      if (!sessionToken) throw new AppError('INVALID_TOKEN');
      const enrolment = await countedPassword(email, () =>
        engine.twoFactor.enable(userId, sessionToken, request.body.password),
      );
      return { success: true as const, ...enrolment };
    },
  );

  app.post<{ Body: CodeBody }>(
    '/auth/2fa/confirm',
    {
      preHandler: [signedIn, recent],
      schema: {
        summary:
          'Confirm 2FA enrolment with a first code from the authenticator app (needs a recent sign-in): 2FA is active ' +
          'from now on; ends the other sessions',
        tags: ['two-factor'],
        security: [{ bearer: [] }],
        body: CodeBody,
        response: { 200: SuccessResponse, ...errors(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId } = authOf(request);
      const confirmed = await engine.twoFactor.confirm(userId, request.body.code, sessionId);
      if (confirmed.result === 'not_enabled')
        throw new AppError('TWO_FACTOR_NOT_ENABLED', 'No 2FA enrolment is pending.');
      if (confirmed.result === 'locked') throw new AppError('TWO_FACTOR_LOCKED');
      if (confirmed.result === 'invalid') {
        await audit.record({
          event: 'twofactor.failed',
          userId,
          sessionId,
          ...restOrigin(request),
          details: { step: 'confirm' },
        });
        throw new AppError('TWO_FACTOR_INVALID_CODE');
      }
      await audit.record({
        event: 'twofactor.enabled',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { endedSessions: confirmed.endedSessions },
      });
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
      const { userId, sessionId, email } = authOf(request);
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
        // The session's age first: an old session learns nothing about the password here.
        await deps.recentAuth.assert(userId, sessionId, reauthCode(request));
        await countedPassword(email, async () => {
          const hash = await deps.passwordHash(userId);
          if (!hash || !(await deps.hasher.verify(hash, pw))) {
            throw new AppError('INVALID_PASSWORD', undefined, { field: 'password' });
          }
        });
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
        response: { 200: TokenResponse, ...errors(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const challenge = request.body.challengeToken ?? challengeOfCookie(request.headers.cookie);
      if (!challenge) throw new AppError('TWO_FACTOR_CHALLENGE_INVALID');
      const challengeUser = await engine.twoFactor.challengeUser(challenge);
      const headers = new Headers({ [CLIENT_IP_HEADER]: clientIpOf(request) });
      const ua = request.headers['user-agent'];
      if (typeof ua === 'string') headers.set('user-agent', ua);
      let verified: Awaited<ReturnType<AuthEngine['twoFactor']['verifyChallenge']>>;
      try {
        verified = await engine.twoFactor.verifyChallenge(challenge, request.body.code, headers);
      } catch (err) {
        if (err instanceof AppError && SIGN_IN_REFUSALS.has(err.code)) {
          // A right code, and no session: the account was disabled, or the address refused, after the password step.
          // Recorded as /auth/login records the same refusal.
          await audit.record({
            event: 'login.failure',
            userId: challengeUser,
            ...restOrigin(request),
            details: { method: 'password', reason: err.code },
          });
        } else if (err instanceof AppError) {
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
