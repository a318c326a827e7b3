import { describe, expect, it, vi } from 'vitest';
import { EchoChatService } from '../../src/channels/chat/chat-service.js';
import { createUsageLimits } from '../../src/channels/chat/usage-limits.js';
import { createTelegram } from '../../src/channels/telegram/telegram-bot.js';
import { openDatabase } from '../../src/db/index.js';
import { startTcpRelay } from '../helpers/tcp-relay.js';
import { createTelegramBotApi } from '../helpers/telegram-bot-api.js';
import { createTestDatabase } from '../helpers/test-app.js';

const TOKEN = '623456789:AAE-dead-leader-test-token';

// Regression: when the polling process's machine died (no FIN, no RST reaches PostgreSQL), its session and the
// advisory lock it held lived on until the server's TCP keepalive gave up, two hours by default: nobody polled.
describe.runIf(process.env.TEST_DATABASE_URL)('Telegram polling: the poller’s machine dies', () => {
  it('a standby takes over within seconds', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300 });
    const testDb = await createTestDatabase();
    const url = testDb.url as string;
    const relay = await startTcpRelay(url);
    const opts = { url, dataDir: testDb.dataDir, poolMax: 2, connectTimeoutSeconds: 1, statementTimeoutSeconds: 10 };
    // The leader's lock connection goes through the relay (the lock connection uses database.listen_url).
    const leaderDb = await openDatabase({ ...opts, listenUrl: relay.via(url), listenerHeartbeatMs: 300 });
    const standbyDb = await openDatabase({ ...opts, listenerHeartbeatMs: 300 });
    const common = {
      token: TOKEN,
      mode: 'polling' as const,
      webhookSecret: '',
      standbyRetry: 0.2,
      apiTimeout: 10,
      baseUrl: 'http://gw.example',
      links: {} as never,
      chat: new EchoChatService(),
      limits: createUsageLimits(),
      audit: { record: async () => {} } as never,
      log: { info() {}, warn() {}, error() {} },
      authenticator: { authenticateTelegram: async () => null },
    };
    const leader = createTelegram({ ...common, apiRoot: `${api.url}/a`, db: leaderDb });
    const standby = createTelegram({ ...common, apiRoot: `${api.url}/b`, db: standbyDb });
    try {
      leader.start();
      await vi.waitFor(() => expect(leader.isPolling).toBe(true), { timeout: 5000 });
      standby.start();
      await new Promise((r) => setTimeout(r, 600));
      expect(standby.isPolling).toBe(false);

      relay.dead = true; // the leader's machine is gone
      await vi.waitFor(() => expect(leader.isPolling).toBe(false), { timeout: 5000 }); // its own heartbeat noticed
      // The server ends the orphaned session after three heartbeats (900 ms); the standby retries every 200 ms.
      await vi.waitFor(() => expect(standby.isPolling).toBe(true), { timeout: 5000, interval: 200 });
    } finally {
      await relay.close(); // frees an orphaned backend, if any, so that the database can be dropped
      await Promise.allSettled([leader.stop(), standby.stop()]);
      await leaderDb.close().catch(() => {});
      await standbyDb.close();
      await testDb.drop();
      await api.close();
    }
  }, 30_000);
});
