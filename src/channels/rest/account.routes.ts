import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { afterAnswer } from '../../account/deferred.js';
import type { AccountStore, EmailVerification, RecentAuth, SendLimit } from '../../account/index.js';
import type { SecurityNotices } from '../../account/security-notices.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import { type AuthEngine, CLIENT_IP_HEADER, clientIpOf } from '../../auth/index.js';
import { type Authenticator, hasSessionCookie } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import { passwordChangedEmail } from '../../email/index.js';
import { AppError } from '../../errors/index.js';
import { countedPasswordCheck, type LoginThrottle } from '../../ratelimit/login-throttle.js';
import {
  type ChangeBody,
  EmailBody,
  makeChangeBody,
  makeResetBody,
  type ResetBody,
  SuccessResponse,
  TokenQuery,
  TokenRefreshResponse,
} from './account.schemas.js';
import { normalizeEmail } from './auth.routes.js';
import { ErrorResponse } from './auth.schemas.js';
import { authOf, carryRenewal, requireAuth } from './require-auth.js';
import { requireRecentAuth } from './require-recent-auth.js';
import { acceptPageForm, PAGE_REFERRER_POLICY, VERIFY_PAGE_CSP, verifiedPage, verifyPage } from './verify-page.js';

export interface AccountRoutesDeps {
  config: Config;
  engine: AuthEngine;
  authenticator: Authenticator;
  audit: AuditLog;
  verification: EmailVerification;
  accounts: AccountStore;
  recentAuth: RecentAuth;
  /** The password-changed notice goes as every security notice does: within the address's limit. */
  notices: Pick<SecurityNotices, 'send'>;
  /** The sign-in lockout: a wrong current password counts as a failed sign-in of the account. */
  loginThrottle: LoginThrottle;
  /**
   * One reset email per address per interval, whoever asks: the per-IP rule alone let requests from many IPs flood one
   * inbox with live reset links.
   */
  resetEmails: SendLimit;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));

const SAME_ANSWER = 'If an account exists for this address, an email is on its way.';

/**
 * Answers 202 SAME_ANSWER, then does `work`, the part that depends on whether the address has an account: up to the
 * answer, a known address costs exactly what an unknown one costs. A failure of `work` is logged, never answered.
 * The whole is after-answer work (afterAnswer), registered before the answer goes out: shutdown waits for it.
 */
function answerThen(reply: FastifyReply, failure: string, work: () => Promise<unknown>): Promise<void> {
  return afterAnswer(
    (async () => {
      // Fastify's reply is thenable: it resolves once the answer is written.
      await reply.status(202).send({ success: true, message: SAME_ANSWER });
      try {
        await work();
      } catch (err) {
        // The message only: the work's values (a link, its token) stay out of the log.
        reply.log.error({ err: { message: (err as Error).message } }, failure);
      }
    })(),
  );
}

/** Email verification, password reset and change, account deletion. */
export async function accountRoutes(app: FastifyInstance, deps: AccountRoutesDeps): Promise<void> {
  const { config, engine, audit, verification, accounts } = deps;
  const password = { min: config.auth.password.min_length, max: config.auth.password.max_length };
  const signedIn = requireAuth(deps.authenticator);
  const recent = requireRecentAuth(deps.recentAuth);

  const verifyEmail = async (token: string, request: FastifyRequest) => {
    const origin = restOrigin(request);
    const proof = { adminEmails: config.admin.emails, origin, audit };
    const { userId, reclaimed } = await verification.verify(token, proof);
    await audit.record({ event: 'email.verified', userId, ...origin });
    // Reclaimed (an administrator's address, see EmailVerification.verify): no password signs in to it any more.
    const message = reclaimed
      ? 'Your email address is verified. As it is an administrator address, the password and sessions set up before ' +
        'this proof no longer work: choose a new password with a password reset, then sign in.'
      : 'Your email address is verified; you can sign in.';
    return { success: true as const, message };
  };
  app.get<{ Querystring: TokenQuery }>(
    '/auth/email/verify',
    {
      schema: {
        summary: 'The page a verification link opens: a button that verifies (the GET itself verifies nothing)',
        tags: ['account'],
        querystring: TokenQuery,
        produces: ['text/html'],
        response: { ...errors(400) },
      },
    },
    async (request, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', VERIFY_PAGE_CSP)
        .header('cache-control', 'no-store')
        .header('referrer-policy', PAGE_REFERRER_POLICY)
        .send(verifyPage(request.query.token)),
  );
  // Its own scope: the page's button posts a form, which no other route takes.
  await app.register(async (scope) => {
    acceptPageForm(scope);
    scope.post<{ Body: TokenQuery }>(
      '/auth/email/verify',
      {
        schema: {
          summary: 'Verify the address of a verification link: JSON {token}, or the form of its page',
          tags: ['account'],
          body: TokenQuery,
          response: { 200: SuccessResponse, ...errors(400, 409, 413, 415, 503) },
        },
      },
      async (request, reply) => {
        const fromPage = request.headers['content-type']?.startsWith('application/x-www-form-urlencoded') === true;
        if (!fromPage) return verifyEmail(request.body.token, request);
        reply.type('text/html; charset=utf-8').header('content-security-policy', VERIFY_PAGE_CSP);
        try {
          const { message } = await verifyEmail(request.body.token, request);
          return reply.send(verifiedPage(true, message));
        } catch (err) {
          if (!(err instanceof AppError) || err.status >= 500) throw err;
          return reply.status(err.status).send(verifiedPage(false, err.message));
        }
      },
    );
  });

  app.post<{ Body: EmailBody }>(
    '/auth/email/verify/resend',
    {
      schema: {
        summary:
          'Send a verification email again: a link to the signed-in account, else a link to confirm by choosing a password (same answer whatever the address; once per resend interval)',
        tags: ['account'],
        body: EmailBody,
        response: { 202: SuccessResponse, ...errors(400, 429, 503) },
      },
    },
    async (request, reply) => {
      // A caller signed in to the account gets a plain link (see EmailVerification.resend); a credential that does not
      // check out is no error here, the caller is simply not signed in.
      const sentCredential = request.headers.authorization !== undefined || hasSessionCookie(request.headers.cookie);
      const caller = sentCredential ? await deps.authenticator.authenticateRequest(request) : null;
      carryRenewal(reply, caller);
      const signedInAs = caller?.userId ?? null;
      // The address's send slot is taken before the answer (429 RATE_LIMITED when it is not free), the email after it.
      const sendLink = await verification.resend(normalizeEmail(request.body.email), signedInAs);
      await answerThen(reply, 'resending a verification email failed', async () => {
        // Only a link to the caller's own account is recorded here, with where the caller is. Anyone else's resend is a
        // reset, recorded by the reset hook when its email goes out (password.reset_requested) without an IP or user
        // agent: the account's registrant, who reads its audit log, may be a squatter and the caller the address's owner.
        const { linkSentTo } = await sendLink();
        if (linkSentTo) {
          await audit.record({ event: 'email.verification_sent', userId: linkSentTo, ...restOrigin(request) });
        }
      });
    },
  );

  app.post<{ Body: EmailBody }>(
    '/auth/password/forgot',
    {
      schema: {
        summary: 'Email a single-use password reset link (same answer whatever the address; once per resend interval)',
        tags: ['account'],
        body: EmailBody,
        response: { 202: SuccessResponse, ...errors(400, 503) },
      },
    },
    async (request, reply) => {
      const email = normalizeEmail(request.body.email);
      const headers = new Headers({ [CLIENT_IP_HEADER]: clientIpOf(request) });
      // Better Auth writes a reset token for a known address only: after the answer. So is the address's slot taken
      // (past the limit, nothing is sent): the answer is the same, and as soon, whether the address was asked for
      // recently or not.
      await answerThen(reply, 'requesting a password reset failed', () =>
        deps.resetEmails.run(email, () => engine.requestPasswordReset(email, headers)),
      );
    },
  );

  app.post<{ Body: ResetBody }>(
    '/auth/password/reset',
    {
      schema: {
        summary: 'Set a new password with a reset link token; ends every session of the user',
        tags: ['account'],
        body: makeResetBody(password),
        response: { 200: SuccessResponse, ...errors(400, 503) },
      },
    },
    async (request) => {
      await engine.resetPassword(request.body.token, request.body.password);
      return { success: true as const, message: 'Your password is changed; sign in with it.' };
    },
  );

  app.post<{ Body: ChangeBody }>(
    '/auth/password/change',
    {
      preHandler: [signedIn, recent],
      schema: {
        summary: 'Change the password (needs the current one and a recent sign-in); ends the other sessions',
        tags: ['account'],
        security: [{ bearer: [] }],
        body: makeChangeBody(password),
        response: { 200: TokenRefreshResponse, ...errors(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId, email } = authOf(request);
      const { endedSessions } = await countedPasswordCheck(deps.loginThrottle, email, () =>
        accounts.changePassword({
          userId,
          keepSessionId: sessionId,
          currentPassword: request.body.currentPassword,
          newPassword: request.body.newPassword,
        }),
      );
      await audit.record({
        event: 'password.changed',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { endedSessions },
      });
      const user = await accounts.userEmail(userId);
      if (user) {
        const notice = passwordChangedEmail({ to: user.email, appName: config.email.app_name });
        deps.notices.send(notice, 'password.changed');
      }
      return { success: true as const, endedSessions };
    },
  );

  app.post(
    '/auth/account/delete',
    {
      preHandler: [signedIn, recent],
      schema: {
        summary: 'Delete the account and everything attached to it (needs a recent sign-in or X-2FA-Code)',
        tags: ['account'],
        security: [{ bearer: [] }],
        response: { 200: SuccessResponse, ...errors(401, 403, 409, 429, 503) },
      },
    },
    async (request) => {
      const { userId, sessionId } = authOf(request);
      // Refused for the last administrator (LAST_ADMIN), before anything is written.
      await accounts.deleteUser(userId);
      // The row outlives the user (its user_id is NULL once the user is gone): the id stays in details.
      await audit.record({
        event: 'account.deleted',
        userId,
        sessionId,
        ...restOrigin(request),
        details: { deletedUserId: userId },
      });
      return { success: true as const, message: 'Your account is deleted.' };
    },
  );
}
