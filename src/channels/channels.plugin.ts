import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createLicenseResolver } from '../licenses/index.js';
import { type ChatService, createHttpChatService, EchoChatService } from './chat/chat-service.js';
import { createUsageLimits, type UsageLimits } from './chat/usage-limits.js';
import { createChannelLinks } from './links/channel-links.store.js';
import { channelRoutes } from './links/channels.routes.js';
import { telegramPlugin, WEBHOOK_PATH } from './telegram/telegram.plugin.js';
import { createTelegram, type Telegram } from './telegram/telegram-bot.js';
import { type ChatSockets, createChatSockets } from './websocket/chat-sockets.js';
import { wsChatPlugin } from './websocket/ws-chat.plugin.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The one chat backend every channel talks to. */
    chat: ChatService;
    /** License limits per user, shared by every channel of this process. */
    usageLimits: UsageLimits;
    /** The /ws/chat sockets of this process (counts for metrics, shutdown). */
    chatSockets: ChatSockets;
    /** The Telegram bot; null when telegram.bot_token is not set. */
    telegram: Telegram | null;
  }
}

/**
 * The conversational channels (WebSocket, Telegram) around one ChatService and one set of per-user limits, so a user
 * gets the same answers and the same allowance whichever way they come in.
 */
async function channels(app: FastifyInstance): Promise<void> {
  const { config, authenticator, sessions, sessionEvents } = app;
  const chat: ChatService = config.chat.upstream_url
    ? createHttpChatService({ url: config.chat.upstream_url, timeoutSeconds: config.chat.upstream_timeout })
    : new EchoChatService();
  const usageLimits = createUsageLimits();
  const licenses = createLicenseResolver(config.licenses);
  app.decorate('chat', chat);
  app.decorate('usageLimits', usageLimits);
  app.addHook('onClose', async () => usageLimits.stop());

  const chatSockets = createChatSockets({
    authenticator,
    sessionEvents,
    licenseEvents: app.licenseEvents,
    async sessionState(sessionId) {
      const session = await sessions.findActive(sessionId);
      return session
        ? {
            expiresAt: session.expiresAt,
            license: licenses(session.license),
            refusesAddress: (ip: string | undefined) => app.ipPolicy.refuse(ip, session.ipAllowlist) !== null,
          }
        : null;
    },
    // The Authenticator's check at the upgrade: the IP policy on the allow list the user's session rows carry.
    async addressRefusal(_userId, sessionIds) {
      const found = await Promise.all(sessionIds.map((id) => sessions.findActive(id)));
      const session = found.find((s) => s !== null);
      return session ? (ip) => app.ipPolicy.refuse(ip, session.ipAllowlist) !== null : null;
    },
    limits: usageLimits,
    chat,
    authTimeout: config.websocket.auth_timeout,
    heartbeatInterval: config.websocket.heartbeat_interval,
    maxUnauthenticated: config.websocket.max_unauthenticated,
    log: app.log,
  });
  app.decorate('chatSockets', chatSockets);
  app.metrics.countWebSockets(() => chatSockets.size);
  await app.register(wsChatPlugin, {
    config: config.websocket,
    authenticator,
    limits: usageLimits,
    sockets: chatSockets,
  });

  const links = createChannelLinks(app.db);
  const tg = config.telegram;
  let telegram: Telegram | null = null;
  if (!tg.bot_token) {
    app.log.info('telegram bot off: telegram.bot_token (TELEGRAM_BOT_TOKEN) is not set');
  } else {
    telegram = createTelegram({
      token: tg.bot_token,
      apiRoot: tg.api_root,
      mode: tg.mode,
      webhookSecret: tg.webhook_secret,
      standbyRetry: tg.standby_retry,
      apiTimeout: tg.api_timeout,
      baseUrl: config.server.base_url,
      db: app.db,
      authenticator,
      links,
      chat,
      limits: usageLimits,
      audit: app.audit,
      log: app.log,
    });
    const webhookUrl = tg.webhook_url || `${config.server.base_url}${WEBHOOK_PATH}`;
    await app.register(telegramPlugin, {
      telegram,
      webhookUrl,
      // Telegram only calls HTTPS webhooks; an explicit URL is trusted (a self-hosted Bot API server allows HTTP).
      registerWebhook: Boolean(tg.webhook_url) || webhookUrl.startsWith('https:'),
    });
    app.log.info({ mode: tg.mode }, 'telegram bot on');
  }
  app.decorate('telegram', telegram);

  await app.register(channelRoutes, {
    config,
    authenticator,
    engine: app.engine,
    sessions,
    links,
    audit: app.audit,
    telegram,
    recentAuth: app.recentAuth,
    isAnonymous: (userId) => app.anonymousUsers.isAnonymous(userId),
  });
}

export const channelsPlugin = fp(channels, {
  name: 'channels',
  decorators: {
    fastify: ['config', 'authenticator', 'sessions', 'sessionEvents', 'ipPolicy', 'db', 'audit', 'engine'],
  },
});
