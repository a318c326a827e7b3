import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Bot, GrammyError, webhookCallback } from 'grammy';
import { afterEach, describe, expect, it } from 'vitest';
import { createTelegramBotApi, type TelegramBotApi } from './telegram-bot-api.js';

const TOKEN = '123456789:AAE-stand-in-token';
const cleanups: Array<() => Promise<unknown> | unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup();
  }
});

async function standIn(options: Partial<Parameters<typeof createTelegramBotApi>[0]> = {}): Promise<TelegramBotApi> {
  const api = await createTelegramBotApi({ token: TOKEN, botUsername: 'gateway_test_bot', ...options });
  cleanups.push(() => api.close());
  return api;
}

interface RawReply {
  status: number;
  body: { ok: boolean; result?: unknown; error_code?: number; description?: string };
}

async function raw(api: TelegramBotApi, method: string, params?: Record<string, unknown>, token = TOKEN) {
  const res = await fetch(`${api.url}/bot${token}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(params ?? {}),
  });
  return { status: res.status, body: (await res.json()) as RawReply['body'] };
}

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('Telegram Bot API stand-in: protocol', () => {
  it('answers getMe, 401 for a wrong token, 404 for an unknown method, and form-encoded bodies', async () => {
    const api = await standIn();
    expect(api.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(api.apiRoot).toBe(api.url);

    const me = await raw(api, 'getMe');
    expect(me).toEqual({
      status: 200,
      body: {
        ok: true,
        result: expect.objectContaining({
          id: 123456789,
          is_bot: true,
          first_name: 'Test Gateway Bot',
          username: 'gateway_test_bot',
        }),
      },
    });

    expect(await raw(api, 'getMe', {}, '999:wrong')).toEqual({
      status: 401,
      body: { ok: false, error_code: 401, description: 'Unauthorized' },
    });
    expect(await raw(api, 'launchRockets')).toEqual({
      status: 404,
      body: { ok: false, error_code: 404, description: 'Not Found: method not found' },
    });
    // Allow-listed methods are answered with true.
    expect((await raw(api, 'answerCallbackQuery', { callback_query_id: '1' })).body).toEqual({
      ok: true,
      result: true,
    });

    const form = await fetch(`${api.url}/bot${TOKEN}/sendMessage`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ chat_id: '42', text: '123', reply_markup: '{"inline_keyboard":[]}' }).toString(),
    });
    const sent = (await form.json()) as { ok: boolean; result: { chat: { id: number }; text: string } };
    expect(sent.ok).toBe(true);
    expect(sent.result.chat).toMatchObject({ id: 42, type: 'private' });
    expect(sent.result.text).toBe('123');
    expect(api.sentMessages[0]).toMatchObject({ chat_id: 42, text: '123', reply_markup: { inline_keyboard: [] } });

    expect((await raw(api, 'sendMessage', { chat_id: 42, text: '' })).body).toEqual({
      ok: false,
      error_code: 400,
      description: 'Bad Request: message text is empty',
    });

    const get = await fetch(`${api.url}/bot${TOKEN}/getWebhookInfo`);
    expect(await get.json()).toEqual({
      ok: true,
      result: { url: '', has_custom_certificate: false, pending_update_count: 0 },
    });
  });

  it('confirms by offset and honours limit and allowed_updates', async () => {
    const api = await standIn();
    await api.sendText({ fromId: 7, text: 'one' });
    await api.sendText({ fromId: 7, text: 'two' });
    await api.sendText({ fromId: 7, text: 'three' });

    const first = await raw(api, 'getUpdates', { limit: 2 });
    const updates = first.body.result as Array<{ update_id: number; message: { text: string } }>;
    expect(updates.map((u) => u.message.text)).toEqual(['one', 'two']);
    expect(updates[1]?.update_id).toBe((updates[0]?.update_id ?? 0) + 1);

    const next = await raw(api, 'getUpdates', { offset: (updates[1]?.update_id ?? 0) + 1 });
    expect((next.body.result as Array<{ message: { text: string } }>).map((u) => u.message.text)).toEqual(['three']);
    expect(api.pendingUpdates).toHaveLength(1);

    // Opt-in types are dropped unless asked for; after allowed_updates=['callback_query'] messages are too.
    expect(
      await api.pushUpdate({ message_reaction: { chat: { id: 7, type: 'private', first_name: 'T' } } } as never),
    ).toBeUndefined();
    await raw(api, 'getUpdates', { offset: -1, allowed_updates: ['callback_query'] });
    await api.sendText({ fromId: 7, text: 'ignored' });
    expect(api.pendingUpdates.map((u) => u.message?.text)).toEqual(['three']);
  });

  it('holds getUpdates until an update arrives, and close() ends a held request', async () => {
    const api = await standIn({ maxLongPollMs: 10_000 });
    const started = Date.now();
    const held = raw(api, 'getUpdates', { timeout: 30 });
    await api.waitForPolling();
    expect(api.isPolling).toBe(true);
    const { update } = await api.sendText({ fromId: 5, text: '/help' });
    const reply = await held;
    expect(reply.body.result).toEqual([update]);
    expect(update.message).toMatchObject({
      chat: { id: 5, type: 'private', first_name: 'Test' },
      from: { id: 5, is_bot: false },
      entities: [{ type: 'bot_command', offset: 0, length: 5 }],
    });

    const second = raw(api, 'getUpdates', { timeout: 30, offset: update.update_id + 1 });
    await api.waitForPolling();
    await api.close();
    expect((await second).body).toEqual({ ok: true, result: [] });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('answers 409 to the held getUpdates when a second poller arrives (as the real API does)', async () => {
    const api = await standIn();
    const first = raw(api, 'getUpdates', { timeout: 5 });
    await api.waitForPolling();
    const second = raw(api, 'getUpdates', { timeout: 5 });
    expect(await first).toEqual({
      status: 409,
      body: {
        ok: false,
        error_code: 409,
        description:
          'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running',
      },
    });
    await api.waitForPolling();
    await api.sendText({ fromId: 9, text: 'hi' });
    expect((await second).body.ok).toBe(true);
    expect(api.getUpdatesCalls).toBe(2);
  });

  it('can instead reject the newcomer with 409 (conflictPolicy: reject-new)', async () => {
    const api = await standIn({ conflictPolicy: 'reject-new', maxLongPollMs: 500 });
    const first = raw(api, 'getUpdates', { timeout: 5 });
    await api.waitForPolling();
    const second = await raw(api, 'getUpdates', { timeout: 5 });
    expect(second.status).toBe(409);
    expect(second.body.description).toMatch(/^Conflict: terminated by other getUpdates request/);
    expect((await first).body).toEqual({ ok: true, result: [] });
  });
});

describe('Telegram Bot API stand-in: with real grammY', () => {
  it('serves a long-polling bot: /start abc reaches bot.command with ctx.match, the reply is recorded', async () => {
    const api = await standIn();
    const bot = new Bot(TOKEN, { client: { apiRoot: api.url } });
    const matches: string[] = [];
    bot.command('start', async (ctx) => {
      matches.push(ctx.match);
      await ctx.reply(`welcome ${ctx.match}`);
    });
    const polling = bot.start({ drop_pending_updates: true });
    cleanups.push(async () => {
      if (bot.isRunning()) await bot.stop();
      await polling.catch(() => undefined);
    });

    await api.waitForPolling();
    expect(bot.botInfo.username).toBe('gateway_test_bot');
    expect(api.calls.filter((c) => c.method === 'getMe')).toHaveLength(1);
    expect(api.calls.find((c) => c.method === 'deleteWebhook')?.params).toEqual({ drop_pending_updates: true });

    await api.sendText({ fromId: 1001, text: '/start abc', username: 'alice', firstName: 'Alice' });
    const reply = await api.waitForMessage((m) => m.chat_id === 1001, 3000);
    expect(reply.text).toBe('welcome abc');
    expect(reply.message.chat).toEqual({ id: 1001, type: 'private', first_name: 'Alice', username: 'alice' });
    expect(matches).toEqual(['abc']);

    // `/start@<bot username>` is a command addressed to this bot as well.
    await api.sendText({ fromId: 1001, text: '/start@gateway_test_bot xyz' });
    await api.waitForMessage((m) => m.text === 'welcome xyz', 3000);

    await bot.stop();
    await polling;
    expect(bot.isRunning()).toBe(false);
    // bot.stop() confirmed the handled updates with a last getUpdates(offset).
    expect(api.pendingUpdates).toHaveLength(0);
    expect(api.isPolling).toBe(false);
  });

  it('makes bot.start() fail with 409 when another poller takes over', async () => {
    const api = await standIn();
    const bot = new Bot(TOKEN, { client: { apiRoot: api.url } });
    const polling = bot.start();
    await api.waitForPolling();
    const intruder = raw(api, 'getUpdates', { timeout: 1 });
    const error = await polling.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(GrammyError);
    expect((error as GrammyError).error_code).toBe(409);
    expect(bot.isRunning()).toBe(false);
    await api.sendText({ fromId: 4004, text: 'for the intruder' });
    expect((await intruder).body).toMatchObject({ ok: true, result: [{ message: { text: 'for the intruder' } }] });
  });

  it('delivers to a webhook served by webhookCallback(bot, "http", { secretToken }); a wrong secret gets 401', async () => {
    const api = await standIn();
    const bot = new Bot(TOKEN, { client: { apiRoot: api.url } });
    bot.command('start', (ctx) => ctx.reply(`hook ${ctx.match}`));
    const handle = webhookCallback(bot, 'http', { secretToken: 'hook_secret-1' });
    const server = createServer((req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    const hookUrl = `${await listen(server)}/telegram/webhook`;

    await bot.api.setWebhook(hookUrl, { secret_token: 'hook_secret-1', allowed_updates: ['message'] });
    expect(api.webhook).toMatchObject({ url: hookUrl, secret_token: 'hook_secret-1', allowed_updates: ['message'] });
    const info = await bot.api.getWebhookInfo();
    expect(info).toMatchObject({ url: hookUrl, pending_update_count: 0 });

    const delivered = await api.sendText({ fromId: 2002, text: '/start from-hook' });
    expect(delivered.status).toBe(200);
    const reply = await api.waitForMessage((m) => m.chat_id === 2002, 3000);
    expect(reply.text).toBe('hook from-hook');

    const sentBefore = api.sentMessages.length;
    expect(await api.sendText({ fromId: 2002, text: '/start sneaky' }, { secretToken: 'wrong' })).toMatchObject({
      status: 401,
    });
    expect(await api.sendText({ fromId: 2002, text: '/start bare' }, { secretToken: null })).toMatchObject({
      status: 401,
    });
    expect(api.sentMessages).toHaveLength(sentBefore);
    expect(api.webhook?.last_error_message).toMatch(/401/);

    // While the webhook is set, polling is refused.
    const polling = await raw(api, 'getUpdates', { timeout: 1 });
    expect(polling).toEqual({
      status: 409,
      body: {
        ok: false,
        error_code: 409,
        description:
          "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
      },
    });

    await bot.api.deleteWebhook({ drop_pending_updates: true });
    expect(api.webhook).toBeNull();
    expect(await api.sendText({ fromId: 2002, text: 'queued' })).toMatchObject({ status: undefined });
    expect(api.pendingUpdates).toHaveLength(1);
  });

  it('executes a grammY webhook reply (method call in the webhook response body)', async () => {
    const api = await standIn();
    const bot = new Bot(TOKEN, { client: { apiRoot: api.url, canUseWebhookReply: (m) => m === 'sendMessage' } });
    bot.on('message:text', (ctx) => ctx.reply(`echo ${ctx.message.text}`));
    await bot.api.setMyCommands([{ command: 'start', description: 'Start' }]);
    expect(api.commands).toEqual([{ command: 'start', description: 'Start' }]);

    const handle = webhookCallback(bot, 'http');
    const server = createServer((req, res) => {
      handle(req, res).catch(() => res.writeHead(500).end());
    });
    await bot.api.setWebhook(await listen(server));
    const sendMessageCallsBefore = api.calls.filter((c) => c.method === 'sendMessage').length;

    expect((await api.sendText({ fromId: 3003, text: 'ping' })).status).toBe(200);
    const reply = await api.waitForMessage((m) => m.chat_id === 3003, 1000);
    expect(reply.text).toBe('echo ping');
    // It came back in the webhook response, not as a separate HTTP call... but it is recorded as a call.
    expect(api.calls.filter((c) => c.method === 'sendMessage')).toHaveLength(sendMessageCallsBefore + 1);
  });
});
