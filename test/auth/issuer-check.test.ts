import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIssuerCheck } from '../../src/auth/issuer-check.js';

// Regression: the discovery check's result was kept for the life of the process. A provider whose discovery document
// began announcing another issuer stayed admitted (and one refused stayed refused after the fix) until a restart.
describe('the OIDC issuer check', () => {
  let server: Server;
  let base = '';
  let announced = '';
  let fetches = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: announced }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server?.close());

  it('checks again once its result is older than the TTL, and shares one check between concurrent uses', async () => {
    let clock = 0;
    const errors: object[] = [];
    const check = createIssuerCheck(
      { corp: { issuer: base } },
      { error: (obj) => errors.push(obj) },
      {
        ttlMs: 1000,
        now: () => clock,
      },
    );
    announced = base;
    expect(await Promise.all([check.status('corp'), check.status('corp'), check.status('corp')])).toEqual([
      'ok',
      'ok',
      'ok',
    ]);
    expect(fetches).toBe(1);

    announced = 'https://attacker.example';
    clock = 999;
    expect(await check.status('corp')).toBe('ok'); // still within the TTL: no fetch
    expect(fetches).toBe(1);
    clock = 1000;
    expect(await check.status('corp')).toBe('mismatch');
    expect(errors).toHaveLength(1);

    announced = `${base}/`; // fixed (a trailing slash is the same issuer): admitted again after the TTL
    clock = 2500;
    expect(await check.status('corp')).toBe('ok');
  });
});
