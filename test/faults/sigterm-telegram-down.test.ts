import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayCluster, startGateways } from '../helpers/gateway-process.js';
import { createTelegramBotApi, type TelegramBotApi } from '../helpers/telegram-bot-api.js';

// Regression (review C): SIGTERM while polling a Bot API that cannot be reached exited 1 without closing the database.
// grammY's bot.stop() confirms the offset with one more getUpdates and throws when it fails; that escaped the bot's
// onClose hook, app.close() rejected, and server.ts exited 1 before database.close().
const TOKEN = '423456789:AAE-sigterm-telegram-down';

describe('SIGTERM while polling a Bot API that is down', () => {
  let api: TelegramBotApi;
  let cluster: GatewayCluster;

  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, botUsername: 'sigterm_down_bot', maxLongPollMs: 500 });
    // The embedded database (no DATABASE_URL): one process, it always holds the polling lock.
    cluster = await startGateways(
      1,
      '',
      (tree) => {
        tree.telegram = { ...tree.telegram, bot_token: TOKEN, api_root: api.apiRoot, mode: 'polling', api_timeout: 4 };
      },
      { env: { LOG_LEVEL: 'info' } },
    );
    await api.waitForPolling(10_000);
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await api?.close().catch(() => {});
  });

  it('exits 0 within the shutdown bound, nothing failed on the way', async () => {
    const gateway = cluster.gateways[0];
    if (!gateway) throw new Error('no gateway');
    await api.close(); // the Bot API goes away (a network outage, Telegram down)
    await new Promise((r) => setTimeout(r, 1000));
    const exited = new Promise<number | null>((resolve) => gateway.child.once('exit', (code) => resolve(code)));
    process.kill(-(gateway.child.pid as number), 'SIGTERM');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    const shutdownLines = gateway
      .output()
      .split('\n')
      .filter((l) => /shutting down|error during shutdown|error closing|timed out/.test(l))
      .map((l) => l.slice(0, 300));
    expect({ code, shutdownLines }, JSON.stringify(shutdownLines)).toMatchObject({ code: 0 });
    expect(shutdownLines.join('\n')).not.toMatch(/error during shutdown|error closing|timed out/);
  }, 60_000);
});
