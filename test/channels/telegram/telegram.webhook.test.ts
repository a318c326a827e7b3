import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/app.js';
import { createTelegramBotApi, type TelegramBotApi } from '../../helpers/telegram-bot-api.js';
import { createTestApp, LogCapture, registerUser, type TestApp, testConfig } from '../../helpers/test-app.js';

const TOKEN = '223456789:AAE-webhook-test-token';
const SECRET = 'webhook-secret-0123456789abcdef';

describe('Telegram bot (webhook mode)', () => {
  let api: TelegramBotApi;
  let t: TestApp;
  let webhookUrl: string;

  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, botUsername: 'gateway_hook_bot' });
    t = await createTestApp({
      config: { telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'webhook', webhook_secret: SECRET } },
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    webhookUrl = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/telegram/webhook`;
    await t.app.telegram?.setWebhook(webhookUrl);
  });
  afterAll(async () => {
    await t?.close();
    await api?.close();
  });

  it('registered the webhook with the secret token and does not poll', async () => {
    expect(api.webhook).toMatchObject({ url: webhookUrl, secret_token: SECRET, allowed_updates: ['message'] });
    expect(t.app.telegram?.isPolling).toBe(false);
    expect(api.getUpdatesCalls).toBe(0);
  });

  it('answers an unlinked user with how to link', async () => {
    const { status } = await api.sendText({ fromId: 7001, text: 'hi' });
    expect(status).toBe(200);
    expect((await api.waitForMessage((m) => m.chat_id === 7001)).text).toMatch(/not linked/);
  });

  it('links by code and chats through the webhook', async () => {
    const { token, email } = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: { authorization: `Bearer ${token}` },
    });
    const { code, deepLink } = res.json() as { code: string; deepLink: string };
    expect(deepLink).toBe(`https://t.me/gateway_hook_bot?start=${code}`);
    expect((await api.sendText({ fromId: 7002, text: `/start ${code}` })).status).toBe(200);
    expect((await api.waitForMessage((m) => m.chat_id === 7002)).text).toContain(email);
    await api.sendText({ fromId: 7002, text: 'ping through webhook' });
    await api.waitForMessage((m) => m.chat_id === 7002 && m.text === 'ping through webhook');
    await api.sendText({ fromId: 7003, text: `/link ${code}` });
    expect((await api.waitForMessage((m) => m.chat_id === 7003)).text).toMatch(/not valid/);
  });

  it('refuses a wrong or missing secret token with 401 and does not act on the update', async () => {
    const before = api.sentMessages.length;
    expect((await api.sendText({ fromId: 7004, text: 'forged' }, { secretToken: 'wrong-secret' })).status).toBe(401);
    expect((await api.sendText({ fromId: 7004, text: 'forged' }, { secretToken: null })).status).toBe(401);
    const direct = await fetch(webhookUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': `${SECRET}x` },
      body: JSON.stringify({ update_id: 1 }),
    });
    expect(direct.status).toBe(401);
    expect(await direct.json()).toMatchObject({ success: false, error: { code: 'TELEGRAM_WEBHOOK_SECRET_INVALID' } });
    expect(api.sentMessages.length).toBe(before);
  });

  it('answers a malformed update with 400, never 500', async () => {
    for (const body of ['{', '[]', '{"no":"update_id"}']) {
      const res = await fetch(webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': SECRET },
        body,
      });
      expect(res.status).toBe(400);
    }
  });

  it('acknowledges and ignores a message whose entities lie outside its text, and keeps answering', async () => {
    const post = (update: object) =>
      fetch(webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': SECRET },
        body: JSON.stringify(update),
      });
    const from = { id: 7005, is_bot: false, first_name: 'Odd' };
    const chat = { id: 7005, type: 'private', first_name: 'Odd' };
    const logsBefore = t.logs.lines.length;
    const before = api.sentMessages.length;
    // Found by the hostile-input fuzz test: grammY's command matching read the span of a bot_command entity out
    // of a text that was not there (a sticker), and the update failed with a TypeError.
    for (const message of [
      { sticker: { file_id: 'x' }, entities: [{ type: 'bot_command', offset: 0, length: 6 }] },
      { text: '/start', entities: [{ type: 'bot_command', offset: -2, length: 392 }] },
      { text: '/start', entities: 'not a list' },
      { caption: 'hi', caption_entities: [{ type: 'bot_command', offset: 1, length: 9 }] },
    ]) {
      const res = await post({ update_id: 90, message: { message_id: 1, date: 1, from, chat, ...message } });
      expect(res.status).toBe(200);
    }
    const logged = t.logs.lines.slice(logsBefore);
    expect(logged.filter((l) => l.includes('entities outside their text'))).toHaveLength(4);
    expect(logged.some((l) => l.includes('telegram update failed'))).toBe(false);
    expect(api.sentMessages.length).toBe(before);
    await api.sendText({ fromId: 7005, text: '/whoami' });
    expect((await api.waitForMessage((m) => m.chat_id === 7005)).text).toMatch(/not linked/);
  });

  it('keeps the bot off without a token, says so in the log, and refuses link codes with 503', async () => {
    // A second gateway on the same database without a token (no new database: cheap).
    const logs = new LogCapture();
    const off = await buildApp({
      config: testConfig(t.testDb.dataDir),
      db: t.db,
      logger: { level: 'info', stream: logs } as never,
    });
    try {
      await off.ready();
      expect(off.telegram).toBeNull();
      expect(logs.text).toContain('telegram bot off');
      const { token } = await registerUser(off);
      const res = await off.inject({
        method: 'POST',
        url: '/auth/channels/telegram/link-code',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ error: { code: 'TELEGRAM_DISABLED' } });
      const hook = await off.inject({ method: 'POST', url: '/telegram/webhook', payload: { update_id: 1 } });
      expect(hook.statusCode).toBe(404);
    } finally {
      await off.close();
    }
  });
});

// Regression: the default webhook URL was new URL('/telegram/webhook', base_url), which drops base_url's path: behind
// a proxy that strips a prefix, Telegram was told a URL that does not reach the gateway.
describe('Telegram webhook: the default URL under a base_url with a path prefix', () => {
  it('registers <base_url>/telegram/webhook, the prefix kept', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, botUsername: 'gateway_prefix_bot' });
    const t = await createTestApp({
      config: {
        server: { base_url: 'https://bot.example.com/gw' },
        telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'webhook', webhook_secret: SECRET },
      },
    });
    try {
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      await expect.poll(() => api.webhook?.url).toBe('https://bot.example.com/gw/telegram/webhook');
    } finally {
      await t.close();
      await api.close();
    }
  });
});
