import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthContext } from '../../../src/authenticator/index.js';
import { EchoChatService } from '../../../src/channels/chat/chat-service.js';
import { createUsageLimits } from '../../../src/channels/chat/usage-limits.js';
import { createTelegram } from '../../../src/channels/telegram/telegram-bot.js';
import { createTelegramBotApi, type TelegramBotApi } from '../../helpers/telegram-bot-api.js';

const TOKEN = '623456789:AAE-flood-control-token';

/**
 * A relay in front of the stand-in answering Telegram's flood-control refusal (429 with retry_after) instead of
 * forwarding a sendMessage whenever `refuse()` gives a wait in seconds: what the real Bot API does past about one
 * message a second in a chat.
 */
async function floodRelay(target: string, refuse: () => number | null): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const wait = (req.url ?? '').endsWith('/sendMessage') ? refuse() : null;
    if (wait !== null) {
      req.resume();
      const body = JSON.stringify({
        ok: false,
        error_code: 429,
        description: `Too Many Requests: retry after ${wait}`,
        parameters: { retry_after: wait },
      });
      res.writeHead(429, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const fwd = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

// Regression (review C): a 429 from the Bot API was not retried, so parts 2..N of a long reply were dropped and a
// "Linked." confirmation was lost after the link had been made.
describe('Telegram flood control: a 429 with retry_after is waited out and the message sent again', () => {
  let api: TelegramBotApi;
  let relay: { url: string; server: Server };
  let sendCalls = 0;
  /** sendMessage calls (1-based) to refuse once, with their retry_after. */
  const refuse = new Map<number, number>();
  const warnings: string[] = [];
  const errors: string[] = [];

  const auth = {
    userId: 'u-flood',
    sessionId: null,
    email: 'flood@example.com',
    name: 'F',
    license: { type: 'pro', features: { chat: true }, resourceLimits: {} },
    channel: 'telegram',
    expiresAt: null,
  } as unknown as AuthContext;

  const bot = () =>
    createTelegram({
      token: TOKEN,
      apiRoot: relay.url,
      mode: 'polling',
      webhookSecret: '',
      standbyRetry: 0.1,
      apiTimeout: 10,
      baseUrl: 'http://gw.example',
      db: { tryAdvisoryLock: async () => ({ release: async () => {} }) },
      authenticator: { authenticateTelegram: async () => auth },
      links: { redeemCode: async () => ({ ok: true, userId: 'u-flood', alreadyLinked: false }) } as never,
      chat: new EchoChatService(),
      limits: createUsageLimits(),
      audit: { record: async () => {} } as never,
      log: {
        info() {},
        warn: (obj, msg) => warnings.push(`${msg} ${JSON.stringify(obj)}`),
        error: (obj, msg) => errors.push(`${msg} ${JSON.stringify(obj)}`),
      },
    });

  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300 });
    relay = await floodRelay(api.url, () => {
      sendCalls++;
      const wait = refuse.get(sendCalls);
      refuse.delete(sendCalls);
      return wait ?? null;
    });
  });
  afterAll(async () => {
    relay?.server.closeAllConnections();
    relay?.server.close();
    await api?.close();
  });

  it('sends every part of a long reply when one is refused, and a lost link confirmation again', async () => {
    const telegram = bot();
    telegram.start();
    try {
      await api.waitForPolling(5000);
      // Three parts of 4096: the second is refused once.
      refuse.set(sendCalls + 2, 1);
      await api.sendText({ fromId: 9301, text: `${'a'.repeat(4000)}\n${'b'.repeat(4000)}\n${'c'.repeat(4000)}` });
      await expect
        .poll(() => api.sentMessages.filter((m) => m.chat_id === 9301).map((m) => m.text[0]), { timeout: 5000 })
        .toEqual(['a', 'b', 'c']);

      refuse.set(sendCalls + 1, 1);
      await api.sendText({ fromId: 9303, text: `/link ${'A'.repeat(22)}` });
      const reply = await api.waitForMessage((m) => m.chat_id === 9303, 4000);
      expect(reply.text).toBe('Linked. This Telegram account now chats as flood@example.com.');
      expect([...warnings, ...errors].join('\n')).not.toMatch(/reply failed|update failed/);
    } finally {
      await telegram.stop();
    }
  });

  // Regression (review A): the wait ended at once when the app began to close, so the reply was lost though the
  // shutdown had time for it; it now ends at the shutdown's deadline (stop()'s), not later.
  it('stopping the bot: a wait for retry_after goes on until the deadline, and ends there', async () => {
    const telegram = bot();
    telegram.start();
    await api.waitForPolling(5000);
    refuse.set(sendCalls + 1, 1);
    await api.sendText({ fromId: 9304, text: 'held by flood control for 1 s' });
    await expect.poll(() => refuse.size, { timeout: 3000 }).toBe(0); // refused; the bot now waits 1 s
    telegram.closing(Date.now() + 4000);
    await telegram.stop({ deadline: Date.now() + 4000 });
    expect(api.sentMessages.filter((m) => m.chat_id === 9304).map((m) => m.text)).toEqual([
      'held by flood control for 1 s',
    ]);

    const late = bot();
    late.start();
    await api.waitForPolling(5000);
    refuse.set(sendCalls + 1, 8);
    await api.sendText({ fromId: 9305, text: 'held by flood control for 8 s' });
    await expect.poll(() => refuse.size, { timeout: 3000 }).toBe(0); // refused; the bot now waits 8 s
    const sendCallsAfterRefusal = sendCalls;
    const started = Date.now();
    late.closing(started + 1000);
    await late.stop({ deadline: started + 1000 });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(warnings.join('\n')).toMatch(/dropping the chat replies in progress \{"dropped":1\}/);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(sendCalls).toBe(sendCallsAfterRefusal); // no retry after the deadline
    expect(api.sentMessages.filter((m) => m.chat_id === 9305)).toEqual([]);
  });
});
