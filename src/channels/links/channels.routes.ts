import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RecentAuth } from '../../account/index.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import type { AuthEngine } from '../../auth/index.js';
import { type Authenticator, hasSessionCookie, type SessionStore } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import { AppError } from '../../errors/index.js';
import { ErrorResponse } from '../rest/auth.schemas.js';
import { authOf, carryRenewal, requireAuth } from '../rest/require-auth.js';
import { reauthCode } from '../rest/require-recent-auth.js';
import { verifyWidgetData, type WidgetData } from '../telegram/login-widget.js';
import type { Telegram } from '../telegram/telegram-bot.js';
import type { ChannelLinks } from './channel-links.store.js';
import {
  ChannelsResponse,
  LinkCodeResponse,
  UnlinkParams,
  UnlinkQuery,
  UnlinkResponse,
  WidgetBody,
  WidgetResponse,
} from './channels.schemas.js';

export interface ChannelRoutesDeps {
  config: Config;
  authenticator: Authenticator;
  engine: AuthEngine;
  sessions: SessionStore;
  links: ChannelLinks;
  audit: AuditLog;
  telegram: Telegram | null;
  /** Linking a channel account adds a way in (the login widget signs in with it): it needs a recent sign-in. */
  recentAuth: RecentAuth;
  /** Anonymous users have no other way to sign in again and are not held to that. */
  isAnonymous(userId: string): Promise<boolean>;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));

/** Account linking from the web side: link codes, the list of links, unlinking, and the Telegram Login Widget. */
export async function channelRoutes(app: FastifyInstance, deps: ChannelRoutesDeps): Promise<void> {
  const { config, authenticator, links, audit, telegram } = deps;
  const signedIn = requireAuth(authenticator);
  // A linked Telegram account signs in through the login widget: a fresh session, which passes every
  // recent-authentication check. So linking one needs a recent sign-in (or X-2FA-Code), as adding a passkey does: a
  // stolen older token must not link the attacker's account.
  const mayLink = async (request: FastifyRequest, userId: string, sessionId: string | null) => {
    if (await deps.isAnonymous(userId)) return;
    await deps.recentAuth.assert(userId, sessionId, reauthCode(request));
  };

  app.post(
    '/auth/channels/telegram/link-code',
    {
      preHandler: signedIn,
      schema: {
        summary: 'A one-time code (10 minutes) that links a Telegram account: /link <code> or the deep link',
        tags: ['channels'],
        security: [{ bearer: [] }],
        response: { 201: LinkCodeResponse, ...errors(401, 403, 429, 503) },
      },
    },
    async (request, reply) => {
      if (!telegram) throw new AppError('TELEGRAM_DISABLED');
      const { userId, sessionId } = authOf(request);
      await mayLink(request, userId, sessionId);
      // Issued only while the asking session exists: one ended meanwhile (a password change) is a revoked token.
      const issued = sessionId ? await links.issueCode(userId, sessionId, 'telegram') : null;
      if (!issued) throw new AppError('INVALID_TOKEN');
      const { code, expiresAt } = issued;
      const username = await telegram.username();
      return reply.status(201).send({
        success: true,
        code,
        expiresAt: expiresAt.toISOString(),
        deepLink: username ? `https://t.me/${username}?start=${code}` : null,
      });
    },
  );

  app.get(
    '/auth/channels',
    {
      preHandler: signedIn,
      schema: {
        summary: 'The channel accounts (Telegram, ...) linked to the signed-in user',
        tags: ['channels'],
        security: [{ bearer: [] }],
        response: { 200: ChannelsResponse, ...errors(401, 503) },
      },
    },
    async (request) => ({ success: true as const, channels: await links.listForUser(authOf(request).userId) }),
  );

  app.delete<{ Params: { channelType: string }; Querystring: { channelUserId?: string } }>(
    '/auth/channels/:channelType',
    {
      preHandler: signedIn,
      schema: {
        summary: "Unlinks the signed-in user's accounts of a channel type (or the one given by channelUserId)",
        tags: ['channels'],
        security: [{ bearer: [] }],
        params: UnlinkParams,
        querystring: UnlinkQuery,
        response: { 200: UnlinkResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (request) => {
      const { userId } = authOf(request);
      const { channelType } = request.params;
      const removed = await links.unlinkForUser(userId, channelType, request.query.channelUserId);
      if (removed.length === 0) throw new AppError('CHANNEL_LINK_NOT_FOUND');
      for (const channelUserId of removed) {
        await audit.record({
          event: 'channel.unlinked',
          userId,
          ...restOrigin(request),
          details: { channelType, channelUserId, via: 'rest' },
        });
      }
      return { success: true as const, removed: removed.length };
    },
  );

  app.post<{ Body: WidgetBody }>(
    '/auth/channels/telegram/widget',
    {
      schema: {
        summary: 'Telegram Login Widget: links the account for a signed-in user, or signs in a user already linked',
        tags: ['channels'],
        body: WidgetBody,
        response: { 200: WidgetResponse, ...errors(400, 401, 403, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      if (!telegram) throw new AppError('TELEGRAM_DISABLED');
      const verdict = verifyWidgetData(
        request.body as WidgetData,
        config.telegram.bot_token,
        config.telegram.widget_max_age,
      );
      if (!verdict.ok) {
        await audit.record({
          event: 'login.failure',
          ...restOrigin(request),
          details: { method: 'telegram_widget', reason: verdict.reason },
        });
        throw new AppError(verdict.reason === 'expired' ? 'WIDGET_EXPIRED' : 'WIDGET_SIGNATURE_INVALID');
      }
      const telegramUserId = verdict.telegramUserId;

      // A caller who sends a credential means "link to me": a bad one is refused, never ignored. A credential is what
      // the Authenticator reads as one: any Authorization header, or Better Auth's session cookie (not the device one).
      const sentCredential = request.headers.authorization !== undefined || hasSessionCookie(request.headers.cookie);
      const signedInAs = sentCredential ? await authenticator.authenticateRequest(request) : null;
      carryRenewal(reply, signedInAs);
      if (sentCredential && !signedInAs) throw new AppError('INVALID_TOKEN');

      if (signedInAs) {
        const sessionId = signedInAs.sessionId ?? null;
        await mayLink(request, signedInAs.userId, sessionId);
        const outcome = sessionId ? await links.link(signedInAs.userId, sessionId, 'telegram', telegramUserId) : null;
        if (!outcome) throw new AppError('INVALID_TOKEN');
        if (!outcome.ok) throw new AppError('CHANNEL_ALREADY_LINKED');
        if (!outcome.alreadyLinked) {
          await audit.record({
            event: 'channel.linked',
            userId: signedInAs.userId,
            ...restOrigin(request),
            details: { channelType: 'telegram', channelUserId: telegramUserId, method: 'widget' },
          });
        }
        return { success: true as const, userId: signedInAs.userId, linked: !outcome.alreadyLinked };
      }

      const userId = await links.ownerOf('telegram', telegramUserId);
      if (!userId) throw new AppError('CHANNEL_NOT_LINKED');
      const ua = request.headers['user-agent'];
      const session = await deps.engine.createSession(userId, {
        ip: request.ip,
        userAgent: typeof ua === 'string' ? ua : '',
      });
      // A reclaim of the account (or an unlink) between the lookup above and the new session removed the link and
      // the sessions there were, not this one: it must not sign in by a link that is gone.
      if (!(await links.stillLinked(userId, 'telegram', telegramUserId))) {
        await deps.sessions.delete(session.sessionId);
        throw new AppError('CHANNEL_NOT_LINKED');
      }
      const active = await deps.sessions.findActive(session.sessionId);
      if (!active) throw new Error('new session not found');
      await audit.record({
        event: 'login.success',
        userId,
        sessionId: session.sessionId,
        ...restOrigin(request),
        details: { method: 'telegram_widget' },
      });
      return {
        success: true as const,
        userId,
        linked: false,
        token: authenticator.issueToken(userId, session.sessionId, active.expiresAt),
      };
    },
  );
}
