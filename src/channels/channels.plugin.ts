import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { type ChatService, createHttpChatService, EchoChatService } from './chat/chat-service.js';
import { createUsageLimits, type UsageLimits } from './chat/usage-limits.js';
import { wsChatPlugin } from './websocket/ws-chat.plugin.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The one chat backend every channel talks to. */
    chat: ChatService;
    /** License limits per user, shared by every channel of this process. */
    usageLimits: UsageLimits;
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
  app.decorate('chat', chat);
  app.decorate('usageLimits', usageLimits);
  app.addHook('onClose', async () => usageLimits.stop());

  await app.register(wsChatPlugin, {
    config: config.websocket,
    authenticator,
    sessionEvents,
    async sessionExpiry(sessionId) {
      return (await sessions.findActive(sessionId))?.expiresAt ?? null;
    },
    limits: usageLimits,
    chat,
  });
}

export const channelsPlugin = fp(channels, {
  name: 'channels',
  decorators: { fastify: ['config', 'authenticator', 'sessions', 'sessionEvents', 'db', 'audit'] },
});
