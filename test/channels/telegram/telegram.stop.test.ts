import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createUsageLimits } from '../../../src/channels/chat/usage-limits.js';
import { createTelegram } from '../../../src/channels/telegram/telegram-bot.js';
import { createTelegramBotApi } from '../../helpers/telegram-bot-api.js';

const TOKEN = '523456789:AAE-stop-test-token';

/** A polling bot on `apiRoot` whose lock records its release; `warnings` collects what stop() logged. */
function pollingBot(apiRoot: string, apiTimeout: number) {
  const lock = { released: false };
  const warnings: string[] = [];
  const telegram = createTelegram({
    token: TOKEN,
    apiRoot,
    mode: 'polling',
    webhookSecret: '',
    standbyRetry: 60,
    apiTimeout,
    baseUrl: 'http://gw.example',
    db: {
      tryAdvisoryLock: async () => ({
        release: async () => {
          lock.released = true;
        },
      }),
    },
    authenticator: { authenticateTelegram: async () => null } as never,
    links: {} as never,
    chat: {} as never,
    limits: createUsageLimits(),
    audit: { record: async () => {} } as never,
    log: { info() {}, warn: (_obj, msg) => warnings.push(msg), error() {} },
  });
  return { telegram, lock, warnings };
}

// Regression (review C): telegram.stop(), the bot's onClose hook, threw when grammY's last getUpdates (the offset
// confirmation) failed, so app.close() rejected and the process exited 1 without closing the database; and against a
// silent Bot API it waited for telegram.api_timeout (60 s), past server.shutdown_timeout (10 s).
describe('stopping the polling bot when the Bot API is gone', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0)) await step().catch(() => {});
  });

  it('a Bot API that cannot be reached: stop() resolves and gives the polling lock up', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 500 });
    cleanup.push(() => api.close());
    const { telegram, lock, warnings } = pollingBot(api.apiRoot, 10);
    cleanup.push(() => telegram.stop());
    telegram.start();
    await api.waitForPolling(5000);
    await api.close();

    await expect(telegram.stop()).resolves.toBeUndefined();
    expect(lock.released).toBe(true);
    expect(warnings.join('\n')).toMatch(/could not confirm the last updates/);
  });

  it('a Bot API that stops answering: stop() ends within a few seconds, not telegram.api_timeout', async () => {
    // Answers getMe and the rest, and holds every getUpdates for good.
    const held = new Set<ServerResponse>();
    const silent: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const method = req.url?.split('/').pop();
      req.resume();
      if (method === 'getUpdates') {
        held.add(res);
        return;
      }
      const result =
        method === 'getMe' ? { id: 523456789, is_bot: true, first_name: 'Stop', username: 'stop_test_bot' } : true;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, result }));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanup.push(async () => {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    });
    const { telegram, lock, warnings } = pollingBot(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, 60);
    cleanup.push(() => telegram.stop());
    telegram.start();
    await expect.poll(() => held.size, { timeout: 5000 }).toBeGreaterThan(0);

    const started = Date.now();
    await expect(telegram.stop()).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(6000);
    expect(lock.released).toBe(true);
    expect(warnings.join('\n')).toMatch(/did not confirm the last updates in time/);
  });
});
