import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, type GatewayCluster, startGateways } from '../helpers/gateway-process.js';
import { type OwnPostgres, ownPostgres, postgresBinDir } from '../helpers/own-postgres.js';

// SLOW (about 15-25 s): a gateway process under load while its own PostgreSQL server is stopped and started again.
// It never exits, answers 503 DATABASE_UNAVAILABLE while the database is away, serves again within seconds once it is
// back, and loses no committed registration or session.
describe.runIf(postgresBinDir())('PostgreSQL restarted under load', () => {
  let pg: OwnPostgres;
  let cluster: GatewayCluster;
  let url: string;

  beforeAll(async () => {
    pg = await ownPostgres();
    cluster = await startGateways(1, pg.url);
    url = cluster.gateways[0]?.url as string;
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    pg?.destroy();
  });

  it('503 while away, serving again after, nothing committed lost', async () => {
    const password = 'SecurePassword123!';
    const committed: Array<{ email: string; token: string }> = [];
    const statuses: Array<{ status: number; code?: string; path: string }> = [];
    const register = async () => {
      const email = `r${randomBytes(5).toString('hex')}@example.com`;
      const res = await api(url, 'POST', '/auth/register', { body: { email, password } }).catch(() => null);
      if (!res) return;
      statuses.push({ status: res.status, code: res.body?.error?.code, path: 'register' });
      if (res.status === 201) committed.push({ email, token: res.body.token });
    };
    for (let i = 0; i < 5; i++) await register();
    expect(committed).toHaveLength(5);

    // Load: registrations, session checks and logins from 6 workers until told to stop.
    let running = true;
    const workers = Array.from({ length: 6 }, async (_, w) => {
      while (running) {
        const known = committed[Math.floor(Math.random() * committed.length)] as { email: string; token: string };
        const step = w % 3;
        if (step === 0) await register();
        else {
          const res =
            step === 1
              ? await api(url, 'GET', '/auth/session', { token: known.token }).catch(() => null)
              : await api(url, 'POST', '/auth/login', { body: { email: known.email, password } }).catch(() => null);
          if (res)
            statuses.push({ status: res.status, code: res.body?.error?.code, path: step === 1 ? 'session' : 'login' });
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    });

    await new Promise((r) => setTimeout(r, 800));
    pg.stop();
    await new Promise((r) => setTimeout(r, 1500));
    expect(cluster.gateways[0]?.child.exitCode, cluster.gateways[0]?.output()).toBeNull();
    // While away: a stable 503 on every kind of request, with Retry-After.
    const known = committed[0] as { email: string; token: string };
    const away = [
      await api(url, 'GET', '/auth/session', { token: known.token }),
      await api(url, 'POST', '/auth/register', { body: { email: `away${Date.now()}@example.com`, password } }),
      await api(url, 'POST', '/auth/login', { body: { email: known.email, password } }),
    ];
    for (const res of away) {
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('DATABASE_UNAVAILABLE');
    }
    const health = await api(url, 'GET', '/auth/health');
    expect(health.status).toBe(503);

    pg.start();
    const back = Date.now();
    let healthy = false;
    while (!healthy && Date.now() - back < 20_000) {
      healthy = (await api(url, 'GET', '/auth/session', { token: known.token }).catch(() => null))?.status === 200;
      if (!healthy) await new Promise((r) => setTimeout(r, 100));
    }
    expect(healthy).toBe(true); // serving again within seconds (the bound is generous for a loaded CI machine)
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await Promise.all(workers);

    expect(cluster.gateways[0]?.child.exitCode).toBeNull();
    const serverErrors = statuses.filter((s) => s.status >= 500 && s.code !== 'DATABASE_UNAVAILABLE');
    expect(serverErrors).toEqual([]);
    expect(statuses.some((s) => s.code === 'DATABASE_UNAVAILABLE')).toBe(true);

    // Nothing committed was lost: every 201 can log in, and every token it got still works.
    for (const { email, token } of committed) {
      expect((await api(url, 'GET', '/auth/session', { token })).status).toBe(200);
      expect((await api(url, 'POST', '/auth/login', { body: { email, password } })).status).toBe(200);
    }
    // And session ends propagate again (the LISTEN connection came back): logout, then refused.
    const last = committed.at(-1) as { token: string };
    expect((await api(url, 'POST', '/auth/logout', { token: last.token })).status).toBe(200);
    expect((await api(url, 'GET', '/auth/session', { token: last.token })).status).toBe(401);
  }, 90_000);
});
