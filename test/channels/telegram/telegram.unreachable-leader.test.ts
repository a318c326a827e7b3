import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EchoChatService } from '../../../src/channels/chat/chat-service.js';
import { createUsageLimits } from '../../../src/channels/chat/usage-limits.js';
import { createTelegram, type TelegramDeps } from '../../../src/channels/telegram/telegram-bot.js';
import { createTelegramBotApi } from '../../helpers/telegram-bot-api.js';

const TOKEN = '823456789:AAE-unreachable-leader-token';

/** A path to the Bot API that can be cut (connections reset), as when one host loses its route to Telegram. */
async function cuttableRelay(target: string): Promise<{ url: string; server: Server; cut(): void; restore(): void }> {
  let down = false;
  const server = createServer((req, res) => {
    if (down) {
      req.socket.destroy();
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
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    cut() {
      down = true;
      server.closeAllConnections();
    },
    restore() {
      down = false;
    },
  };
}

/** One advisory lock shared by two "processes", as PostgreSQL keeps it. */
function sharedLock() {
  let holder: string | null = null;
  return {
    get holder() {
      return holder;
    },
    dbFor: (who: string): TelegramDeps['db'] => ({
      async tryAdvisoryLock() {
        if (holder !== null) return null;
        holder = who;
        return {
          async release() {
            if (holder === who) holder = null;
          },
        };
      },
    }),
  };
}

function bot(apiRoot: string, db: TelegramDeps['db'], warnings: string[] = []) {
  return createTelegram({
    token: TOKEN,
    apiRoot,
    mode: 'polling',
    webhookSecret: '',
    standbyRetry: 0.2,
    apiTimeout: 4,
    baseUrl: 'http://gw.example',
    db,
    authenticator: { authenticateTelegram: async () => null },
    links: {} as never,
    chat: new EchoChatService(),
    limits: createUsageLimits(),
    audit: { record: async () => {} } as never,
    log: { info() {}, warn: (_obj, msg) => warnings.push(msg), error() {} },
  });
}

// Regression (review C): a poller that could not reach the Bot API kept the polling lock for good (grammY retries
// getUpdates every 3 s, and getMe, for ever), so no standby that could reach Telegram ever took over.
describe('Telegram polling: a leader that cannot reach the Bot API gives the lock up', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => {});
  });

  async function setup() {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300 });
    cleanup.push(() => api.close());
    const relay = await cuttableRelay(`${api.url}/a`);
    cleanup.push(async () => {
      relay.server.closeAllConnections();
      relay.server.close();
    });
    const lock = sharedLock();
    const warnings: string[] = [];
    const a = bot(relay.url, lock.dbFor('a'), warnings);
    const b = bot(`${api.url}/b`, lock.dbFor('b'));
    cleanup.push(
      () => a.stop(),
      () => b.stop(),
    );
    return { api, relay, lock, a, b, warnings };
  }

  it('getUpdates failing for telegram.api_timeout: the standby takes over and answers', async () => {
    const { api, relay, lock, a, b, warnings } = await setup();
    a.start();
    await api.waitForPolling(5000);
    expect(lock.holder).toBe('a');
    b.start();

    relay.cut(); // host A can no longer reach the Bot API; its database connection is fine
    const cutAt = Date.now();
    await api.sendText({ fromId: 9401, text: 'is anyone polling?' });
    const answer = await api.waitForMessage((m) => m.chat_id === 9401, 20_000);
    expect(answer.text).toMatch(/not linked/);
    expect(lock.holder).toBe('b');
    // Not before api_timeout (4 s) of failures: a passing failure does not give the lock up.
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(4000);
    expect(warnings.join('\n')).toMatch(/unreachable while polling; giving the polling lock up/);
    // A sits out; B keeps the lock.
    await new Promise((r) => setTimeout(r, 1000));
    expect({ holder: lock.holder, aPolling: a.isPolling, bPolling: b.isPolling }).toEqual({
      holder: 'b',
      aPolling: false,
      bPolling: true,
    });
  }, 30_000);

  it('getMe failing under the lock: it is released after telegram.api_timeout and the standby polls', async () => {
    const { api, relay, lock, a, b, warnings } = await setup();
    relay.cut();
    a.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(lock.holder).toBe('a');
    b.start();
    await api.sendText({ fromId: 9402, text: 'hello?' });
    const answer = await api.waitForMessage((m) => m.chat_id === 9402, 20_000);
    expect(answer.text).toMatch(/not linked/);
    expect(lock.holder).toBe('b');
    expect(warnings.join('\n')).toMatch(/getMe did not answer; giving the polling lock up/);
  }, 30_000);

  it('a leader alone that gave the lock up takes it again, and polls once the Bot API is back', async () => {
    const { api, relay, lock, a, warnings } = await setup();
    a.start();
    await api.waitForPolling(5000);
    relay.cut();
    await expect.poll(() => warnings.join('\n'), { timeout: 15_000 }).toMatch(/unreachable while polling/);
    relay.restore();
    await api.sendText({ fromId: 9403, text: 'back?' });
    expect((await api.waitForMessage((m) => m.chat_id === 9403, 15_000)).text).toMatch(/not linked/);
    expect(lock.holder).toBe('a');
  }, 30_000);
});
