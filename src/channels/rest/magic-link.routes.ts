import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ExchangeCodes, type MagicLinks, SECRET_PATTERN } from '../../accounts/index.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import { type AuthEngine, CLIENT_IP_HEADER, clientIpOf } from '../../auth/index.js';
import type { Authenticator, SessionStore } from '../../authenticator/index.js';
import { AppError } from '../../errors/index.js';
import { clientKey } from '../../ratelimit/client-key.js';
import { createOncePerWindow } from '../../ratelimit/once-per-window.js';
import { normalizeEmail } from './auth.routes.js';
import { ErrorResponse, TokenResponse } from './auth.schemas.js';
import type { BrowserFinish } from './browser-finish.js';
import {
  type MagicLinkBody,
  MagicLinkBody as MagicLinkBodySchema,
  MagicLinkResponse,
  MagicLinkVerifyQuery,
} from './sign-in-methods.schemas.js';
import { acceptPageForm, magicLinkPage, PAGE_REFERRER_POLICY, pageCsp } from './verify-page.js';

export interface MagicLinkRoutesDeps {
  enabled: boolean;
  /** Where the browser goes after a valid link; empty: the verify route answers the token as JSON. */
  redirectUrl: string;
  engine: AuthEngine;
  authenticator: Authenticator;
  sessions: SessionStore;
  audit: AuditLog;
  links: MagicLinks;
  codes: ExchangeCodes;
  finish: BrowserFinish;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
const TOKEN = new RegExp(SECRET_PATTERN);

/** Passwordless sign-in by a single-use link sent by email. */
export async function magicLinkRoutes(app: FastifyInstance, deps: MagicLinkRoutesDeps): Promise<void> {
  const { engine, authenticator, sessions, audit, links, finish } = deps;
  // The page's button posts, and the answer redirects to the front end: its origin is a form target too.
  const csp = pageCsp(deps.redirectUrl);
  const enabled = () => {
    if (!deps.enabled) throw new AppError('FEATURE_DISABLED');
  };
  // A refusal is audited once per client, address and window, as the per-IP limits audit theirs: a client repeating a
  // refused request writes one row, not one per request.
  const refusedOnce = createOncePerWindow({ windowMs: links.window * 1000 });

  app.post<{ Body: MagicLinkBody }>(
    '/auth/magic-link',
    {
      // Its answer waits for nothing: no session changes here, and the account lookup comes after it.
      config: { endsNoSession: true },
      schema: {
        summary: 'Email a sign-in link (the same answer whether or not the address has an account)',
        tags: ['magic-link'],
        body: MagicLinkBodySchema,
        response: { 200: MagicLinkResponse, ...errors(400, 404, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      enabled();
      const email = normalizeEmail(request.body.email);
      try {
        await links.request(email, request.body.codeChallenge);
      } catch (err) {
        if (
          err instanceof AppError &&
          err.code === 'RATE_LIMITED' &&
          refusedOnce.first(`${clientKey(request.ip)}|${email}`)
        ) {
          await audit.record({ event: 'rate_limit.hit', ...restOrigin(request), details: { route: 'magic-link' } });
        }
        throw err;
      }
      return { success: true as const, message: 'If the address can sign in, a link is on its way.' };
    },
  );

  /**
   * Signs in with a link's token: a redirect with a one-time code (or the error) to oauth.redirect_url, or, without
   * one, the token as JSON.
   */
  const signIn = async (token: string, request: FastifyRequest, reply: FastifyReply) => {
    const found = TOKEN.test(token) ? await links.verify(token, restOrigin(request)) : null;
    if (!found) {
      await audit.record({
        event: 'login.failure',
        ...restOrigin(request),
        details: { method: 'magic_link', reason: 'MAGIC_LINK_INVALID' },
      });
      return finish.failure(reply, 'MAGIC_LINK_INVALID');
    }
    if (found.twoFactor) {
      await audit.record({
        event: 'login.failure',
        userId: found.userId,
        ...restOrigin(request),
        details: { method: 'magic_link', reason: 'TWO_FACTOR_REQUIRED' },
      });
      return finish.failure(reply, 'TWO_FACTOR_REQUIRED');
    }
    const headers = new Headers({ [CLIENT_IP_HEADER]: clientIpOf(request) });
    const ua = request.headers['user-agent'];
    if (typeof ua === 'string') headers.set('user-agent', ua);
    let session: Awaited<ReturnType<typeof engine.methods.createSession>>;
    try {
      session = await engine.methods.createSession(found.userId, headers);
    } catch (err) {
      // The sign-in guard refused (disabled account, an address the user does not allow): like any failed sign-in.
      if (!(err instanceof AppError)) throw err;
      await audit.record({
        event: 'login.failure',
        userId: found.userId,
        ...restOrigin(request),
        details: { method: 'magic_link', reason: err.code },
      });
      return finish.failure(reply, err.code);
    }
    if (found.created) {
      await audit.record({ event: 'signup', ...session, ...restOrigin(request), details: { method: 'magic_link' } });
    }
    await audit.record({
      event: 'login.success',
      ...session,
      ...restOrigin(request),
      details: { method: 'magic_link' },
    });
    // A bound link ends with a code even without a redirect URL: its requester exchanges it with the verifier.
    if (deps.redirectUrl || found.codeChallenge) return finish.success(reply, session, found.codeChallenge);
    const active = await sessions.findActive(session.sessionId);
    if (!active) throw new Error('the session just created is not active');
    reply.header('cache-control', 'no-store');
    return {
      success: true as const,
      userId: session.userId,
      token: authenticator.issueToken(session.userId, session.sessionId, active.expiresAt),
    };
  };

  app.get<{ Querystring: MagicLinkVerifyQuery }>(
    '/auth/magic-link/verify',
    {
      schema: {
        summary: 'The page a sign-in link opens: a button that signs in (the GET itself spends nothing)',
        tags: ['magic-link'],
        querystring: MagicLinkVerifyQuery,
        produces: ['text/html'],
        response: { ...errors(400, 404) },
      },
    },
    async (request, reply) => {
      enabled();
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', csp)
        .header('cache-control', 'no-store')
        .header('referrer-policy', PAGE_REFERRER_POLICY)
        .send(magicLinkPage(request.query.token));
    },
  );
  // Its own scope: the page's button posts a form, which no other route takes.
  await app.register(async (scope) => {
    acceptPageForm(scope);
    scope.post<{ Body: MagicLinkVerifyQuery }>(
      '/auth/magic-link/verify',
      {
        schema: {
          summary:
            'Sign in with a link: redirects with a one-time code (or answers the token without a redirect URL); JSON {token} or the form of its page',
          tags: ['magic-link'],
          body: MagicLinkVerifyQuery,
          response: {
            200: T.Union([TokenResponse, T.Object({ success: T.Literal(true), code: T.String() })]),
            ...errors(400, 403, 404, 413, 415, 503),
          },
        },
      },
      async (request, reply) => {
        enabled();
        return signIn(request.body.token, request, reply);
      },
    );
  });
}
