import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, emptyDatabase, type GatewayCluster, startGateways } from '../helpers/gateway-process.js';
import { startMoodySmtp } from '../helpers/smtp-sink.js';

// Regression (review C): SIGTERM right after POST /auth/password/forgot answered 202 lost the reset email. It is sent
// after the answer, and shutdown closed the app and the pool and exited without waiting for it.
describe.runIf(process.env.TEST_DATABASE_URL)('SIGTERM with a reset email on its way', () => {
  let cluster: GatewayCluster;
  let database: Awaited<ReturnType<typeof emptyDatabase>>;
  let smtp: Awaited<ReturnType<typeof startMoodySmtp>>;

  beforeAll(async () => {
    // A slow mail server: it greets 1.5 s after a connection (a loaded or distant relay).
    smtp = await startMoodySmtp({ greetAfterMs: 1500 });
    database = await emptyDatabase(process.env.TEST_DATABASE_URL as string);
    cluster = await startGateways(1, database.url, (tree) => {
      tree.email = { ...tree.email, smtp_url: smtp.url };
    });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await database?.drop();
    await smtp?.close();
  });

  it('sends the email the 202 promised, then exits 0', async () => {
    const gateway = cluster.gateways[0];
    if (!gateway) throw new Error('no gateway');
    const email = `m${randomBytes(4).toString('hex')}@example.com`;
    expect(
      (await api(gateway.url, 'POST', '/auth/register', { body: { email, password: 'SecurePassword123!' } })).status,
    ).toBe(201);

    expect((await api(gateway.url, 'POST', '/auth/password/forgot', { body: { email } })).status).toBe(202);
    // The send has started: the gateway is connected to the mail server, waiting for its greeting.
    for (let i = 0; i < 100 && smtp.connections === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(smtp.connections).toBeGreaterThan(0);

    const exited = new Promise<number | null>((resolve) => gateway.child.once('exit', (code) => resolve(code)));
    process.kill(-(gateway.child.pid as number), 'SIGTERM');
    // Within server.shutdown_timeout (10 s by default).
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(code, gateway.output()).toBe(0);
    expect(
      smtp.received.filter((to) => to === email),
      gateway.output(),
    ).toHaveLength(1);
  }, 60_000);
});
