import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { pollingLockKey } from '../../src/channels/telegram/telegram-bot.js';
import { DEFAULT_RATE_LIMIT_RULES } from '../../src/config/schema.js';
import { api, emptyDatabase, type GatewayCluster, startGateways } from '../helpers/gateway-process.js';
import { createTelegramBotApi, type TelegramBotApi } from '../helpers/telegram-bot-api.js';

// SLOW (about 30-45 s): real gateway processes on one PostgreSQL database (and one Redis) act as one. PostgreSQL only;
// the shared rate-limit and lockout tests also need TEST_REDIS_URL (without Redis the counters are per process).
const adminUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;

const PASSWORD = 'SecurePassword123!';
/** Small limits, so a few requests spread over three processes reach them: per client IP, and per account. */
const LOGINS_PER_IP = 4;
const MAX_FAILURES = 3;
const BASE_LOCKOUT = 120;

/**
 * A client address of its own, sent as X-Forwarded-For through the trusted loopback "proxy" (as behind nginx): each
 * test starts with a fresh per-IP budget in Redis, whatever earlier runs or tests on this machine spent.
 */
const freshIp = () => `10.${[...randomBytes(3)].join('.')}`;
const freshEmail = (tag: string) => `${tag}-${randomBytes(4).toString('hex')}@example.com`;

const query = async <T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) => {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    return (await db.query<T>(sql, params)).rows;
  } finally {
    await db.end();
  }
};

describe.runIf(adminUrl)('three gateway processes, one database', () => {
  const BOT_TOKEN = '523456789:AAE-scale-out-test-token';
  let database: Awaited<ReturnType<typeof emptyDatabase>>;
  let cluster: GatewayCluster;
  let bot: TelegramBotApi;
  let a: string;
  let b: string;
  let c: string;
  // Everything that is not about the per-IP limit comes from one address of this run's own.
  const ip = freshIp();
  const call = (url: string, method: string, path: string, options: Parameters<typeof api>[3] = {}) =>
    api(url, method, path, { ip, ...options });

  beforeAll(async () => {
    // reject-new: a second poller would be answered 409, never silently take over the held poll.
    bot = await createTelegramBotApi({ token: BOT_TOKEN, maxLongPollMs: 300, conflictPolicy: 'reject-new' });
    database = await emptyDatabase(adminUrl as string);
    // Started together on an empty database: three migrations race for the schema's advisory lock.
    cluster = await startGateways(
      3,
      database.url,
      (tree) => {
        tree.server.trust_proxy = '127.0.0.1';
        tree.rate_limit = {
          enabled: true,
          // Both routes of the sign-in bucket (they share one budget, so they must agree on it).
          rules: DEFAULT_RATE_LIMIT_RULES.map((r) => (r.bucket === 'sign-in' ? { ...r, max: LOGINS_PER_IP } : r)),
        };
        tree.lockout = {
          ...tree.lockout,
          max_failures: MAX_FAILURES,
          base_lockout: BASE_LOCKOUT,
          failure_window: 600,
          forget_after: 600,
        };
        tree.telegram = { ...tree.telegram, mode: 'polling', standby_retry: 0.5 };
      },
      {
        env: { TELEGRAM_BOT_TOKEN: BOT_TOKEN, ...(redisUrl ? { REDIS_URL: redisUrl } : {}) },
        // One stand-in, a path of its own per process: every Bot API call says which process made it.
        envEach: (i) => ({ TELEGRAM_API_ROOT: `${bot.url}/g${i}` }),
      },
    );
    [a, b, c] = cluster.gateways.map((g) => g.url) as [string, string, string];
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await database?.drop();
    await bot?.close();
  });

  it('migrated once, concurrently, without an error in any process', async () => {
    for (const g of cluster.gateways) {
      expect(g.child.exitCode).toBeNull();
      expect(g.output()).not.toMatch(/"level":(50|60)|fatal|error/i);
    }
    const triggers = await query<{ n: string }>(
      database.url,
      `SELECT count(*) AS n FROM pg_trigger WHERE tgname = 'sessions_ended' AND NOT tgisinternal`,
    );
    expect(Number(triggers[0]?.n)).toBe(1);
    const tables = await query(database.url, `SELECT 1 FROM information_schema.tables WHERE table_name = 'sessions'`);
    expect(tables).toHaveLength(1);
    for (const url of [a, b, c]) expect((await call(url, 'GET', '/auth/health')).status).toBe(200);
  });

  it('a token issued by A works on B and C', async () => {
    const email = freshEmail('u');
    const reg = await call(a, 'POST', '/auth/register', { body: { email, password: PASSWORD } });
    expect(reg.status).toBe(201);
    for (const url of [a, b, c]) {
      const res = await call(url, 'GET', '/auth/session', { token: reg.body.token });
      expect(res.status).toBe(200);
      expect(res.body.user.email).toBe(email);
    }
    // And a login on C yields a token A accepts.
    const login = await call(c, 'POST', '/auth/login', { body: { email, password: PASSWORD } });
    expect(login.status).toBe(200);
    expect((await call(a, 'GET', '/auth/session', { token: login.body.token })).status).toBe(200);
  });

  it('a logout on B ends the session on A and C, although A and C had it cached', async () => {
    const email = freshEmail('u');
    const { body } = await call(a, 'POST', '/auth/register', { body: { email, password: PASSWORD } });
    for (const url of [a, c]) expect((await call(url, 'GET', '/auth/session', { token: body.token })).status).toBe(200);
    expect((await call(b, 'POST', '/auth/logout', { token: body.token })).status).toBe(200);
    expect((await call(b, 'GET', '/auth/session', { token: body.token })).status).toBe(401);
    // Other processes learn of it through NOTIFY (milliseconds): allow that delivery, nothing more.
    for (const url of [a, c]) {
      let status = 0;
      for (let i = 0; i < 40 && status !== 401; i++) {
        status = (await call(url, 'GET', '/auth/session', { token: body.token })).status;
        if (status !== 401) await new Promise((r) => setTimeout(r, 25));
      }
      expect(status).toBe(401);
    }
  });

  it('a logout on B closes the session sockets on A and C (4409), other sessions stay open', async () => {
    const email = freshEmail('u');
    const { body } = await call(a, 'POST', '/auth/register', { body: { email, password: PASSWORD } });
    const login = await call(c, 'POST', '/auth/login', { body: { email, password: PASSWORD } });
    const open = (url: string, token: string) =>
      new Promise<{ ws: WebSocket; closed: Promise<number> }>((resolve, reject) => {
        const ws = new WebSocket(`${url.replace('http', 'ws')}/ws/chat`, {
          headers: { authorization: `Bearer ${token}` },
        });
        const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
        ws.once('message', () => resolve({ ws, closed }));
        ws.once('error', reject);
      });
    const onA = await open(a, body.token);
    const onC = await open(c, body.token);
    const otherSession = await open(a, login.body.token);
    expect((await call(b, 'POST', '/auth/logout', { token: body.token })).status).toBe(200);
    expect(await onA.closed).toBe(4409);
    expect(await onC.closed).toBe(4409);
    expect(otherSession.ws.readyState).toBe(WebSocket.OPEN);
    otherSession.ws.close();
  });

  // Per-process memory would give each process a budget of its own: these fail unless the counters are shared.
  it.runIf(redisUrl)('one login rate limit per client IP across A, B and C (Redis)', async () => {
    const client = freshIp();
    const login = (url: string, from = client) =>
      api(url, 'POST', '/auth/login', { ip: from, body: { email: freshEmail('rl'), password: 'wrong-password-1' } });
    // The budget spread over the three processes (distinct emails: no lockout involved): about one each.
    const spread = [a, b, c, a].slice(0, LOGINS_PER_IP);
    for (const url of spread) expect((await login(url)).status).toBe(401);
    for (const url of [b, c, a]) {
      const res = await login(url);
      expect(res.status).toBe(429);
      expect(res.body.error.code).toBe('RATE_LIMITED');
      const retryAfter = Number(res.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
    }
    // Per client: another address still gets an answer on its merits.
    expect((await login(b, freshIp())).status).toBe(401);
  });

  it.runIf(redisUrl)('failed logins spread over A, B and C lock the account on all three (Redis)', async () => {
    const email = freshEmail('lock');
    const reg = await api(a, 'POST', '/auth/register', { ip: freshIp(), body: { email, password: PASSWORD } });
    expect(reg.status).toBe(201);
    // Each from another address too: the lockout is per account, whatever the IP.
    const login = (url: string, password: string) =>
      api(url, 'POST', '/auth/login', { ip: freshIp(), body: { email, password } });
    const failures = [a, b, c, a, b, c].slice(0, MAX_FAILURES);
    for (const url of failures) expect((await login(url, 'wrong-password-1')).status).toBe(401);
    // Now even the right password is refused everywhere.
    for (const url of [a, b, c]) {
      const res = await login(url, PASSWORD);
      expect(res.status).toBe(429);
      expect(res.body.error.code).toBe('ACCOUNT_LOCKED');
      const retryAfter = Number(res.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(BASE_LOCKOUT / 2);
      expect(retryAfter).toBeLessThanOrEqual(BASE_LOCKOUT);
    }
    // One lockout, audited once, by whichever process set it.
    const rows = await query(database.url, `SELECT 1 FROM auth_audit_log WHERE event = 'lockout' AND user_id = $1`, [
      reg.body.userId,
    ]);
    expect(rows).toHaveLength(1);
  });

  it.runIf(redisUrl)('a lockout set through A is enforced by B and C (Redis)', async () => {
    const email = freshEmail('lock');
    expect(
      (await api(a, 'POST', '/auth/register', { ip: freshIp(), body: { email, password: PASSWORD } })).status,
    ).toBe(201);
    const login = (url: string, password: string) =>
      api(url, 'POST', '/auth/login', { ip: freshIp(), body: { email, password } });
    for (let i = 0; i < MAX_FAILURES; i++) expect((await login(a, `wrong-password-${i}`)).status).toBe(401);
    for (const url of [b, c]) {
      const res = await login(url, PASSWORD);
      expect(res.status).toBe(429);
      expect(res.body.error.code).toBe('ACCOUNT_LOCKED');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(BASE_LOCKOUT / 2);
    }
  });

  const getUpdatesBy = (from = 0) =>
    bot.calls
      .slice(from)
      .filter((x) => x.method === 'getUpdates')
      .map((x) => x.via);
  const repliesTo = (chatId: number) => bot.sentMessages.filter((m) => m.chat_id === chatId);
  /** Sends a text from a new Telegram user and waits for the bot's one answer; a second user's answer is a barrier. */
  const answeredOnce = async (timeoutMs: number) => {
    const [first, barrier] = [1, 2].map(() => 10_000 + randomBytes(3).readUIntBE(0, 3));
    await bot.sendText({ fromId: first as number, text: 'hello?' });
    const reply = await bot.waitForMessage((m) => m.chat_id === first, timeoutMs);
    expect(reply.text).toMatch(/not linked/);
    // Updates are handled in order: once the later one is answered, a duplicate answer to the first would be in.
    await bot.sendText({ fromId: barrier as number, text: 'and me?' });
    await bot.waitForMessage((m) => m.chat_id === barrier, timeoutMs);
    expect(repliesTo(first as number)).toHaveLength(1);
    const sentBy = bot.calls.filter((x) => x.method === 'sendMessage').map((x) => x.via);
    return sentBy[sentBy.length - 1];
  };

  let poller: string | undefined;

  it('exactly one process polls Telegram (advisory lock); an update is answered once', async () => {
    await bot.waitForPolling(30_000);
    // Several standby retries (0.5 s) and long polls (0.3 s) later, still the same one process and no other.
    await vi.waitFor(() => expect(getUpdatesBy().length).toBeGreaterThanOrEqual(8), { timeout: 20_000 });
    const pollers = new Set(getUpdatesBy());
    expect(pollers.size).toBe(1);
    poller = [...pollers][0];
    expect(poller).toMatch(/^g[0-2]$/);
    const holders = await query<{ n: string }>(
      database.url,
      `SELECT count(*) AS n FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND ((classid::bigint << 32) | objid::bigint) = $1`,
      [pollingLockKey(BOT_TOKEN)],
    );
    expect(Number(holders[0]?.n)).toBe(1);
    expect(await answeredOnce(10_000)).toBe(poller);
    expect(new Set(getUpdatesBy())).toEqual(new Set([poller]));
  });

  // Kills a process: keep it last in this describe.
  it('when the polling process is SIGKILLed, a standby takes over and answers', async () => {
    expect(poller).toBeDefined();
    const killed = cluster.gateways[Number(poller?.slice(1))];
    const from = bot.calls.length;
    await killed?.stop('SIGKILL'); // no polite release: PostgreSQL ends its session, and with it the lock
    const successor = await answeredOnce(20_000);
    expect(successor).not.toBe(poller);
    // From the successor's first poll on, it is the only poller; the dead one made no call after that.
    const after = getUpdatesBy(from);
    const takeover = after.findIndex((via) => via !== poller);
    expect(takeover).toBeGreaterThanOrEqual(0);
    expect(new Set(after.slice(takeover))).toEqual(new Set([successor]));
    for (const url of cluster.gateways.filter((g) => g !== killed).map((g) => g.url)) {
      expect((await call(url, 'GET', '/auth/health')).status).toBe(200);
    }
  });
});

describe.runIf(adminUrl)('three gateway processes, Telegram webhook mode', () => {
  const BOT_TOKEN = '623456789:AAE-scale-out-webhook-token';
  const SECRET = `wh_${randomBytes(16).toString('hex')}`;
  let database: Awaited<ReturnType<typeof emptyDatabase>>;
  let cluster: GatewayCluster;
  let bot: TelegramBotApi;

  beforeAll(async () => {
    bot = await createTelegramBotApi({ token: BOT_TOKEN });
    database = await emptyDatabase(adminUrl as string);
    cluster = await startGateways(3, database.url, undefined, {
      env: {
        TELEGRAM_BOT_TOKEN: BOT_TOKEN,
        TELEGRAM_MODE: 'webhook',
        TELEGRAM_WEBHOOK_SECRET: SECRET,
        TELEGRAM_API_ROOT: bot.url,
      },
    });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await database?.drop();
    await bot?.close();
  });

  it('every process accepts the webhook with the secret (and only with it); none polls', async () => {
    for (const [i, g] of cluster.gateways.entries()) {
      const fromId = 20_000 + i;
      const update = {
        update_id: 500 + i,
        message: {
          message_id: 1,
          date: Math.floor(Date.now() / 1000),
          chat: { id: fromId, type: 'private', first_name: 'Web' },
          from: { id: fromId, is_bot: false, first_name: 'Web' },
          text: 'hello?',
        },
      };
      const post = (secret?: string) =>
        fetch(`${g.url}/telegram/webhook`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(secret ? { 'x-telegram-bot-api-secret-token': secret } : {}),
          },
          body: JSON.stringify(update),
        });
      const refused = await post(`${SECRET}x`);
      expect(refused.status).toBe(401);
      expect((await refused.json()).error.code).toBe('TELEGRAM_WEBHOOK_SECRET_INVALID');
      expect((await post()).status).toBe(401);
      expect((await post(SECRET)).status).toBe(200);
      expect((await bot.waitForMessage((m) => m.chat_id === fromId, 10_000)).text).toMatch(/not linked/);
    }
    // Only the accepted deliveries were handled: one answer each.
    for (const i of [0, 1, 2]) expect(bot.sentMessages.filter((m) => m.chat_id === 20_000 + i)).toHaveLength(1);
    expect(bot.getUpdatesCalls).toBe(0);
  });
});
