import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthContext } from '../../../src/authenticator/index.js';
import type { ChatService } from '../../../src/channels/chat/chat-service.js';
import { createUsageLimits } from '../../../src/channels/chat/usage-limits.js';
import { telegramPlugin } from '../../../src/channels/telegram/telegram.plugin.js';
import { createTelegram } from '../../../src/channels/telegram/telegram-bot.js';
import { createTelegramBotApi } from '../../helpers/telegram-bot-api.js';

const TOKEN = '723456789:AAE-stop-replies-token';

const auth = {
  userId: 'u-stop',
  sessionId: null,
  email: 'stop@example.com',
  name: 'S',
  license: { type: 'pro', features: { chat: true }, resourceLimits: {} },
  channel: 'telegram',
  expiresAt: null,
} as unknown as AuthContext;

/** A chat service whose answer comes `ms` after the question, unless its signal ends the wait first. */
function slowChat(ms: number) {
  const seen = { started: 0, aborted: false };
  const chat: ChatService = {
    name: 'slow',
    async *reply(_auth, _message, signal) {
      seen.started++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => {
          seen.aborted = true;
          clearTimeout(timer);
          resolve();
        });
      });
      if (!signal.aborted) yield 'the late answer';
    },
  };
  return { chat, seen };
}

/** The gateway's bot plugin on a bare Fastify app with `shutdownTimeout` (server.shutdown_timeout), polling `apiRoot`. */
async function appWithBot(apiRoot: string, chat: ChatService, shutdownTimeout: number) {
  const warnings: Array<{ obj: object; msg: string }> = [];
  const telegram = createTelegram({
    token: TOKEN,
    apiRoot,
    mode: 'polling',
    webhookSecret: '',
    standbyRetry: 60,
    apiTimeout: 10,
    baseUrl: 'http://gw.example',
    db: { tryAdvisoryLock: async () => ({ release: async () => {} }) },
    authenticator: { authenticateTelegram: async () => auth },
    links: {} as never,
    chat,
    limits: createUsageLimits(),
    audit: { record: async () => {} } as never,
    log: { info() {}, warn: (obj, msg) => warnings.push({ obj, msg }), error() {} },
  });
  const app = Fastify();
  app.decorate('config', { server: { shutdown_timeout: shutdownTimeout } } as never);
  await app.register(telegramPlugin, { telegram, webhookUrl: '', registerWebhook: false });
  await app.ready();
  return { app, warnings };
}

// Regression (review A): telegram.stop(), the bot's onClose hook, waited 2 s for the chat replies in progress; a reply
// a few seconds long was lost at SIGTERM, though its message had been confirmed to Telegram and never came again.
describe('closing the app while Telegram chat replies are in progress', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0)) await step().catch(() => {});
  });

  it('a reply ready within half of server.shutdown_timeout is sent before the close ends', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 500 });
    cleanup.push(() => api.close());
    const { chat, seen } = slowChat(3500);
    const { app, warnings } = await appWithBot(api.apiRoot, chat, 10);
    cleanup.push(() => app.close());
    await api.waitForPolling(5000);
    await api.sendText({ fromId: 9401, text: 'hello' });
    await expect.poll(() => seen.started, { timeout: 3000 }).toBe(1);

    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(api.pendingUpdates).toHaveLength(0);
    expect(api.sentMessages.filter((m) => m.chat_id === 9401).map((m) => m.text)).toEqual(['the late answer']);
    expect(warnings).toEqual([]);
  }, 15_000);

  it('a reply still going at the deadline is dropped then, counted in the log, and never sent later', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 500 });
    cleanup.push(() => api.close());
    const { chat, seen } = slowChat(4000);
    // Half of 2 s: the replies get 1 s from the start of the close.
    const { app, warnings } = await appWithBot(api.apiRoot, chat, 2);
    cleanup.push(() => app.close());
    await api.waitForPolling(5000);
    await api.sendText({ fromId: 9402, text: 'a secret question' });
    await expect.poll(() => seen.started, { timeout: 3000 }).toBe(1);

    const started = Date.now();
    await app.close();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(2000);
    expect(seen.aborted).toBe(true); // the upstream request ended with it
    expect(warnings).toEqual([
      {
        obj: { dropped: 1 },
        msg: 'telegram: shutdown deadline reached; dropping the chat replies in progress',
      },
    ]);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    expect(api.sentMessages.filter((m) => m.chat_id === 9402)).toEqual([]);
  }, 15_000);
});
