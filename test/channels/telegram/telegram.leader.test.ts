import { describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../../src/app.js';
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
