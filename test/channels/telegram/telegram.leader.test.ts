import { describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../../src/app.js';
import { EchoChatService } from '../../../src/channels/chat/chat-service.js';
import { createUsageLimits } from '../../../src/channels/chat/usage-limits.js';
import { createTelegram, type TelegramDeps } from '../../../src/channels/telegram/telegram-bot.js';
import { loadConfig } from '../../../src/config/index.js';
import { openDatabase } from '../../../src/db/index.js';
import { createTelegramBotApi } from '../../helpers/telegram-bot-api.js';
import { createTestDatabase, REPO_ROOT, testConfig } from '../../helpers/test-app.js';

const TOKEN = '423456789:AAE-leader-test-token';

// Two gateway processes on one PostgreSQL database: the advisory lock lets exactly one poll; when it goes away the
// standby takes over. PGlite is a single process, so there is nothing to elect there.
describe.skipIf(!process.env.TEST_DATABASE_URL)('Telegram polling: one process polls at a time', () => {
  it('elects one poller and fails over when it closes', async () => {
    // reject-new: a second poller would be answered 409 and show up in the log as an error, not silently win.
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300, conflictPolicy: 'reject-new' });
    const testDb = await createTestDatabase();
    const secondDb = await openDatabase({
      url: testDb.url as string,
      dataDir: testDb.dataDir,
      poolMax: 2,
      connectTimeoutSeconds: 5,
      statementTimeoutSeconds: 30,
    });
    const config = testConfig(testDb.dataDir, {
      telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'polling', standby_retry: 0.2 },
    });
    const a = await buildApp({ config, db: testDb.db, logger: false });
    const b = await buildApp({ config, db: secondDb, logger: false });
    let aClosed = false;
    try {
      await a.ready();
      await b.ready();
      await api.waitForPolling(5000);
      await vi.waitFor(() => expect([a.telegram?.isPolling, b.telegram?.isPolling].filter(Boolean)).toHaveLength(1));
      // Several standby retries later, still exactly one.
      await new Promise((r) => setTimeout(r, 700));
      expect([a.telegram?.isPolling, b.telegram?.isPolling].filter(Boolean)).toHaveLength(1);
      const leader = a.telegram?.isPolling ? a : b;
      const standby = leader === a ? b : a;
      await leader.close();
      if (leader === a) aClosed = true;
      await vi.waitFor(() => expect(standby.telegram?.isPolling).toBe(true), { timeout: 5000 });
      await api.sendText({ fromId: 8001, text: 'anyone there?' });
      expect((await api.waitForMessage((m) => m.chat_id === 8001, 3000)).text).toMatch(/not linked/);
    } finally {
      if (!aClosed) await a.close().catch(() => {});
      await b.close().catch(() => {});
      await secondDb.close();
      await testDb.drop();
      await api.close();
    }
  });
});

describe('Telegram polling: a lock lost before polling starts', () => {
  // Regression (review): a lock lost while init() ran (grammY retries getMe for minutes when the Bot API is away)
  // called stop() on a bot not yet started, a no-op, and the start that followed polled without the lock.
  it('is not polled with', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300 });
    const testDb = await createTestDatabase();
    let granted = 0;
    // The database's own lock, reported lost as soon as it is granted (what the heartbeat does on a silent cut).
    const db = new Proxy(testDb.db, {
      get(target, prop) {
        if (prop === 'tryAdvisoryLock') {
          return async (key: number, onLost?: () => void) => {
            const lock = await target.tryAdvisoryLock(key, onLost);
            if (lock) {
              granted++;
              onLost?.();
            }
            return lock;
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const config = testConfig(testDb.dataDir, {
      telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'polling', standby_retry: 0.2 },
    });
    const app = await buildApp({ config, db, logger: false });
    try {
      await app.ready();
      // Taken, lost and given back several times over: never polled with.
      await vi.waitFor(() => expect(granted).toBeGreaterThanOrEqual(3), { timeout: 5000 });
      expect(api.getUpdatesCalls).toBe(0);
      expect(app.telegram?.isPolling).toBe(false);
    } finally {
      await app.close();
      await testDb.drop();
      await api.close();
    }
  });
});

describe('Telegram polling: a lock lost mid-batch', () => {
  // Regression (review): on lock loss the leader went on handling the rest of the batch it had fetched, which stop()
  // had left unconfirmed, so the new leader fetched and answered those updates too.
  it('leaves the rest of the batch to the new leader: every update is answered once', async () => {
    const api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 300 });
    // One advisory lock, as PostgreSQL keeps it.
    let holder: string | null = null;
    const onLost = new Map<string, () => void>();
    const dbFor = (who: string): TelegramDeps['db'] => ({
      async tryAdvisoryLock(_key, lost) {
        if (holder !== null) return null;
        holder = who;
        if (lost) onLost.set(who, lost);
        return {
          async release() {
            if (holder === who) holder = null;
          },
        };
      },
    });
    const common = {
      token: TOKEN,
      mode: 'polling' as const,
      webhookSecret: '',
      standbyRetry: 0.1,
      apiTimeout: 10,
      baseUrl: 'http://gw.example',
      links: {} as never,
      chat: new EchoChatService(),
      limits: createUsageLimits(),
      audit: { record: async () => {} } as never,
      log: { info() {}, warn() {}, error() {} },
    };
    let lookups = 0;
    const a = createTelegram({
      ...common,
      apiRoot: `${api.url}/a`,
      db: dbFor('a'),
      // The leader's lock connection drops during its first lookup (a slow database): the standby takes over.
      authenticator: {
        async authenticateTelegram() {
          if (lookups++ === 0) {
            holder = null; // the server ended the lock's session
            onLost.get('a')?.();
            b.start();
          }
          await new Promise((r) => setTimeout(r, 300));
          return null;
        },
      },
    });
    const b = createTelegram({
      ...common,
      apiRoot: `${api.url}/b`,
      db: dbFor('b'),
      authenticator: { authenticateTelegram: async () => null },
    });
    const users = [9101, 9102, 9103];
    const answers = () => users.map((id) => api.sentMessages.filter((m) => m.chat_id === id).length);
    try {
      // Three users write while nobody polls: the leader fetches them as one batch.
      for (const fromId of users) await api.sendText({ fromId, text: 'hello' });
      a.start();
      await vi.waitFor(() => expect(answers()).not.toContain(0), { timeout: 5000 });
      await a.stop(); // the old leader is done with its batch
      expect(answers()).toEqual([1, 1, 1]);
      expect(lookups).toBe(1);
    } finally {
      await a.stop();
      await b.stop();
      await api.close();
    }
  });
});

describe('Telegram configuration checks', () => {
  it('refuses webhook mode without a strong webhook secret, naming the key', () => {
    const env = {
      CONFIG_FILE: `${REPO_ROOT}config.yaml`,
      SECRETS_FILE: '/nonexistent-is-optional.yaml',
      AUTH_SECRET: 'x'.repeat(40),
      DATA_DIR: '/tmp/gw-telegram-config-test',
      TELEGRAM_BOT_TOKEN: '1:abc',
      TELEGRAM_MODE: 'webhook',
    };
    expect(() => loadConfig({ env: { ...env, SECRETS_FILE: '' }, cwd: '/tmp' })).toThrow(/telegram\.webhook_secret/);
    expect(() =>
      loadConfig({ env: { ...env, SECRETS_FILE: '', TELEGRAM_WEBHOOK_SECRET: 'short' }, cwd: '/tmp' }),
    ).toThrow(/telegram\.webhook_secret/);
    const ok = loadConfig({ env: { ...env, SECRETS_FILE: '', TELEGRAM_WEBHOOK_SECRET: 's'.repeat(24) }, cwd: '/tmp' });
    expect(ok.telegram).toMatchObject({ mode: 'webhook', bot_token: '1:abc' });
  });
});
