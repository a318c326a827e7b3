import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AuthContext } from '../../../src/authenticator/index.js';
import { createHttpChatService } from '../../../src/channels/chat/chat-service.js';
import { createUsageLimits } from '../../../src/channels/chat/usage-limits.js';
import { replies } from '../../../src/channels/telegram/replies.js';
import { createTelegram } from '../../../src/channels/telegram/telegram-bot.js';
import { createTelegramBotApi, type TelegramBotApi } from '../../helpers/telegram-bot-api.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';
import { connect, listen } from '../../helpers/ws-client.js';

const TOKEN = '123456789:AAE-polling-test-token';

describe('Telegram bot (polling): linking, commands, chat', () => {
  let api: TelegramBotApi;
  let t: TestApp;
  let nextId = 5000;
  const telegramUser = () => nextId++;

  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, botUsername: 'gateway_test_bot', maxLongPollMs: 500 });
    t = await createTestApp({
      config: {
        telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'polling' },
        websocket: { heartbeat_interval: 5 },
      },
    });
    await api.waitForPolling(5000);
  });
  afterAll(async () => {
    await t?.close(); // stops the bot before the stand-in goes away
    await api?.close();
  });

  const linkCode = async (token: string) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.statusCode).toBe(201);
    return res.json() as { code: string; expiresAt: string; deepLink: string };
  };

  /** Sends a text as a Telegram user and waits for the bot's next answer to that chat. */
  const say = async (fromId: number, text: string): Promise<string> => {
    const before = api.sentMessages.length;
    await api.sendText({ fromId, text });
    const reply = await api.waitForMessage((m) => m.chat_id === fromId && api.sentMessages.indexOf(m) >= before, 3000);
    return reply.text;
  };

  it('polls (this single process holds the lock) and answers an unlinked user with how to link, nothing else', async () => {
    expect(t.app.telegram?.isPolling).toBe(true);
    const from = telegramUser();
    const answer = await say(from, 'hello bot');
    expect(answer).toMatch(/not linked/);
    expect(answer).toMatch(/\/link <code>/);
    const rows = await t.db.query('SELECT 1 FROM user_channel_links WHERE channel_user_id = $1', [String(from)]);
    expect(rows.rows).toHaveLength(0);
  });

  it('links with /start <code> (the deep link), then chats through the ChatService as that user', async () => {
    const { token, userId, email } = await registerUser(t.app);
    const { code, deepLink, expiresAt } = await linkCode(token);
    expect(deepLink).toBe(`https://t.me/gateway_test_bot?start=${code}`);
    expect(new Date(expiresAt).getTime() - Date.now()).toBeGreaterThan(9 * 60_000);
    const from = telegramUser();
    expect(await say(from, `/start ${code}`)).toContain(`Linked. This Telegram account now chats as ${email}`);
    const link = await t.db.query<{ user_id: string }>(
      "SELECT user_id FROM user_channel_links WHERE channel_type = 'telegram' AND channel_user_id = $1",
      [String(from)],
    );
    expect(link.rows[0]?.user_id).toBe(userId);
    expect(await say(from, 'echo me')).toBe('echo me');
    expect(await say(from, '/whoami')).toBe(`Linked to Test User <${email}>; license: free.`);
    expect(t.logs.text).not.toContain(code);
    expect(t.logs.text).not.toContain(TOKEN);
  });

  it('links with /link <code>; the code works once', async () => {
    const { token } = await registerUser(t.app);
    const { code } = await linkCode(token);
    const from = telegramUser();
    expect(await say(from, `/link ${code}`)).toMatch(/^Linked\./);
    const other = telegramUser();
    expect(await say(other, `/link ${code}`)).toMatch(/not valid/);
    expect(await say(other, 'hi')).toMatch(/not linked/);
  });

  it('refuses an expired code', async () => {
    const { token } = await registerUser(t.app);
    const { code } = await linkCode(token);
    await t.db.query("UPDATE channel_link_codes SET expires_at = now() - interval '1 second'");
    const from = telegramUser();
    expect(await say(from, `/link ${code}`)).toMatch(/expired/);
    expect(await say(from, `/link ${code}`)).toMatch(/not valid/); // and it is gone
  });

  it('refuses a malformed or unknown code, and /link without a code explains itself', async () => {
    const from = telegramUser();
    expect(await say(from, '/link')).toMatch(/Send \/link <code>/);
    expect(await say(from, '/link short')).toMatch(/not valid/);
    expect(await say(from, `/link ${'A'.repeat(22)}`)).toMatch(/not valid/);
  });

  it('keeps a Telegram account linked to one user: a second user code is refused and stays usable', async () => {
    const first = await registerUser(t.app);
    const second = await registerUser(t.app);
    const from = telegramUser();
    expect(await say(from, `/link ${(await linkCode(first.token)).code}`)).toMatch(/^Linked/);
    const { code } = await linkCode(second.token);
    expect(await say(from, `/link ${code}`)).toMatch(/linked to another user/);
    const elsewhere = telegramUser();
    expect(await say(elsewhere, `/link ${code}`)).toMatch(/^Linked/); // the refused code was not spent
  });

  it('/unlink removes the link; the account is unlinked afterwards', async () => {
    const { token } = await registerUser(t.app);
    const from = telegramUser();
    await say(from, `/link ${(await linkCode(token)).code}`);
    expect(await say(from, '/unlink')).toMatch(/^Unlinked/);
    expect(await say(from, '/whoami')).toMatch(/not linked/);
    expect(await say(from, '/unlink')).toMatch(/not linked to any user/);
    const list = await t.app.inject({
      method: 'GET',
      url: '/auth/channels',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(list.json()).toEqual({ success: true, channels: [] });
  });

  it('shares the per-minute message limit with the WebSocket channel', async () => {
    const { token } = await registerUser(t.app);
    const from = telegramUser();
    await say(from, `/link ${(await linkCode(token)).code}`);
    const c = await connect(`${await listen(t.app)}/ws/chat`, { authorization: `Bearer ${token}` });
    await c.next();
    for (let i = 0; i < 9; i++) {
      c.send({ type: 'message', id: `w${i}`, text: 'x' });
      await c.next();
      await c.next();
    }
    expect(await say(from, 'the tenth')).toBe('the tenth'); // free: 10 per minute in total
    expect(await say(from, 'the eleventh')).toMatch(/too fast/);
    c.send({ type: 'message', id: 'w-over', text: 'x' });
    expect(await c.next()).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
    c.ws.close();
  });

  // Regression: a long reply was cut every 4096 units, through an emoji, and a trailing "\n" became a refused message.
  it('splits a long reply into parts Telegram accepts: whole emoji, no blank part', async () => {
    const { token } = await registerUser(t.app);
    const from = telegramUser();
    await say(from, `/link ${(await linkCode(token)).code}`);
    const before = api.sentMessages.length;
    const sent = () => api.sentMessages.slice(before).filter((m) => m.chat_id === from);
    await api.sendText({ fromId: from, text: `${'a'.repeat(4095)}😀 and more` }); // the echo service answers with it
    await api.waitForMessage((m) => m.chat_id === from && m.text.endsWith('and more'), 3000);
    await api.sendText({ fromId: from, text: `${'b'.repeat(4096)}\n` });
    await api.waitForMessage((m) => m.chat_id === from && m.text.startsWith('bbbb'), 3000);
    expect(await say(from, 'next')).toBe('next'); // the bot is past the long reply: nothing more of it will come
    const texts = sent().map((m) => m.text);
    expect(texts.map((text) => text.length)).toEqual([4095, 11, 4096, 4]);
    expect(texts[0]).toBe('a'.repeat(4095));
    expect(texts[1]).toBe('😀 and more');
    expect(t.logs.text).not.toContain('telegram reply failed');
  });

  it('answers an unknown command with the list of commands', async () => {
    expect(await say(telegramUser(), '/frobnicate')).toMatch(/Unknown command/);
  });
});

describe('Telegram bot (polling): answers from an HTTP upstream', () => {
  let api: TelegramBotApi;
  let upstream: Server;
  let bot: ReturnType<typeof createTelegram>;
  /** How the upstream's last endless answer ended: 'closed' when the gateway stopped reading it. */
  let endless: Promise<'closed' | 'finished'> = Promise.resolve('finished');

  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300 });
    // "slow" answers half, stalls, then the rest; anything else is answered with words until the gateway hangs up
    // (or 8 MiB, far more than a reply may be).
    upstream = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => {
        raw += c.toString();
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        if ((JSON.parse(raw) as { text: string }).text === 'slow') {
          res.write('The answer is NOT ');
          setTimeout(() => res.end('to be trusted: this first half alone is wrong.'), 1000);
          return;
        }
        endless = new Promise((resolve) => {
          let sent = 0;
          res.on('close', () => resolve(res.writableFinished ? 'finished' : 'closed'));
          const more = () => {
            if (res.destroyed) return;
            if (sent >= 8 * 1024 * 1024) return void res.end();
            sent += 64 * 1024;
            if (res.write('word '.repeat((64 * 1024) / 5))) setImmediate(more);
            else res.once('drain', more);
          };
          more();
        });
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const auth = {
      userId: 'u-upstream',
      sessionId: null,
      email: 'u@example.com',
      name: 'U',
      license: { type: 'pro', features: { chat: true }, resourceLimits: {} },
      channel: 'telegram',
      expiresAt: null,
    } as unknown as AuthContext;
    bot = createTelegram({
      token: TOKEN,
      apiRoot: api.url,
      mode: 'polling',
      webhookSecret: '',
      standbyRetry: 0.1,
      apiTimeout: 10,
      baseUrl: 'http://gw.example',
      db: { tryAdvisoryLock: async () => ({ release: async () => {} }) },
      authenticator: { authenticateTelegram: async () => auth },
      links: {} as never,
      // chat.upstream_timeout has no maximum: an upstream may take longer than the bot waits for a reply.
      chat: createHttpChatService({
        url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/chat`,
        timeoutSeconds: 600,
      }),
      limits: createUsageLimits(),
      audit: { record: async () => {} } as never,
      log: { info() {}, warn() {}, error() {} },
    });
    bot.start();
    await api.waitForPolling(5000);
  });
  afterEach(() => vi.restoreAllMocks());
  afterAll(async () => {
    await bot?.stop();
    upstream?.close();
    await api?.close();
  });

  // Regression (review): a reply cut off by the bot's own time limit was sent as if it were the whole answer.
  it('answers "unavailable" when the reply takes longer than the bot waits, not with the part that came', async () => {
    const real = AbortSignal.timeout.bind(AbortSignal);
    // The bot's 120 s limit on a reply, scaled down to 300 ms.
    vi.spyOn(AbortSignal, 'timeout').mockImplementation((ms: number) => real(ms === 120_000 ? 300 : ms));
    await api.sendText({ fromId: 9201, text: 'slow' });
    expect((await api.waitForMessage((m) => m.chat_id === 9201, 3000)).text).toBe(replies.chatUnavailable);
  });

  // Regression (review): an endless or huge answer was read whole into memory and sent as hundreds of messages, most
  // of them refused by Telegram's per-chat rate limit.
  it('stops reading an oversized answer and sends 16 messages, the last saying it was truncated', async () => {
    const before = api.sentMessages.length;
    await api.sendText({ fromId: 9202, text: 'tell me everything' });
    await api.waitForMessage((m) => m.chat_id === 9202 && m.text === replies.truncated, 5000);
    expect(await endless).toBe('closed');
    const texts = api.sentMessages
      .slice(before)
      .filter((m) => m.chat_id === 9202)
      .map((m) => m.text);
    expect(texts).toHaveLength(16);
    expect(texts.at(-1)).toBe(replies.truncated);
    for (const text of texts.slice(0, -1)) expect(text).toMatch(/^(word ?)+$/);
  });
});
