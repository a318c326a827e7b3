import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, emptyDatabase, type GatewayCluster, startGateways } from '../helpers/gateway-process.js';

// SLOW (about 10-20 s): three real gateway processes on one PostgreSQL database act as one. PostgreSQL only.
const adminUrl = process.env.TEST_DATABASE_URL;

describe.runIf(adminUrl)('three gateway processes, one database', () => {
  let database: Awaited<ReturnType<typeof emptyDatabase>>;
  let cluster: GatewayCluster;
  let a: string;
  let b: string;
  let c: string;

  beforeAll(async () => {
    database = await emptyDatabase(adminUrl as string);
    // Started together on an empty database: three migrations race for the schema's advisory lock.
    cluster = await startGateways(3, database.url);
    [a, b, c] = cluster.gateways.map((g) => g.url) as [string, string, string];
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await database?.drop();
  });

  it('migrated once, concurrently, without an error in any process', async () => {
    for (const g of cluster.gateways) {
      expect(g.child.exitCode).toBeNull();
      expect(g.output()).not.toMatch(/"level":(50|60)|fatal|error/i);
    }
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    try {
      const { rows } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_trigger WHERE tgname = 'sessions_ended' AND NOT tgisinternal`,
      );
      expect(Number(rows[0]?.n)).toBe(1);
      const tables = await db.query(`SELECT 1 FROM information_schema.tables WHERE table_name = 'sessions'`);
      expect(tables.rowCount).toBe(1);
    } finally {
      await db.end();
    }
    for (const url of [a, b, c]) expect((await api(url, 'GET', '/auth/health')).status).toBe(200);
  });

  it('a token issued by A works on B and C', async () => {
    const email = `u${randomBytes(4).toString('hex')}@example.com`;
    const reg = await api(a, 'POST', '/auth/register', { body: { email, password: 'SecurePassword123!' } });
    expect(reg.status).toBe(201);
    for (const url of [a, b, c]) {
      const res = await api(url, 'GET', '/auth/session', { token: reg.body.token });
      expect(res.status).toBe(200);
      expect(res.body.user.email).toBe(email);
    }
    // And a login on C yields a token A accepts.
    const login = await api(c, 'POST', '/auth/login', { body: { email, password: 'SecurePassword123!' } });
    expect(login.status).toBe(200);
    expect((await api(a, 'GET', '/auth/session', { token: login.body.token })).status).toBe(200);
  });

  it('a logout on B ends the session on A and C, although A and C had it cached', async () => {
    const email = `u${randomBytes(4).toString('hex')}@example.com`;
    const { body } = await api(a, 'POST', '/auth/register', { body: { email, password: 'SecurePassword123!' } });
    for (const url of [a, c]) expect((await api(url, 'GET', '/auth/session', { token: body.token })).status).toBe(200);
    expect((await api(b, 'POST', '/auth/logout', { token: body.token })).status).toBe(200);
    expect((await api(b, 'GET', '/auth/session', { token: body.token })).status).toBe(401);
    // Other processes learn of it through NOTIFY (milliseconds): allow that delivery, nothing more.
    for (const url of [a, c]) {
      let status = 0;
      for (let i = 0; i < 40 && status !== 401; i++) {
        status = (await api(url, 'GET', '/auth/session', { token: body.token })).status;
        if (status !== 401) await new Promise((r) => setTimeout(r, 25));
      }
      expect(status).toBe(401);
    }
  });

  // Shared rate limits and lockouts come with the rate-limit branch: probe for a limit on one process, then check the
  // same budget holds when the attempts are spread over three. Skips (passes vacuously, with a note) without limits.
  it('login rate limits / lockouts are shared (skipped when this build has none)', async (ctx) => {
    const attempt = (url: string, email: string) =>
      api(url, 'POST', '/auth/login', { body: { email, password: 'wrong-password-123' } });
    const budget = async (urls: string[]) => {
      const email = `x${randomBytes(4).toString('hex')}@example.com`;
      for (let i = 0; i < 30; i++) {
        const { status } = await attempt(urls[i % urls.length] as string, email);
        if (status === 429) return i;
      }
      return null;
    };
    const single = await budget([a]);
    if (single === null) {
      ctx.skip('no login rate limit or lockout within 30 attempts on this build (rate-limit branch not merged)');
      return;
    }
    const spread = await budget([a, b, c]);
    expect(spread).toBe(single);
  });

  it.todo('exactly one Telegram poller among the three (channels branch: enable with its bot config)');
  it.todo('a logout on B closes the session sockets on A (channels branch: /ws/chat)');
});
