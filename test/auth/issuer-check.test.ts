import { createServer, type Server, type ServerResponse } from 'node:http';
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

// Regression: a discovery URL that redirected was taken for an unreachable provider and let through, while Better Auth
// follows the redirect and trusts the issuer the target announces. Only an outage (no answer, 5xx) lets a sign-in go on.
describe('the OIDC issuer check, on answers other than the document', () => {
  let server: Server;
  let base = '';
  let answer: (res: ServerResponse) => void = () => {};
  beforeAll(async () => {
    server = createServer((_req, res) => answer(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server?.close());

  const statusFor = async (respond: typeof answer) => {
    answer = respond;
    const errors: object[] = [];
    const check = createIssuerCheck({ corp: { issuer: base } }, { error: (obj) => errors.push(obj) });
    const status = await check.status('corp');
    return { status, errors };
  };
  const json = (body: unknown) => (res: ServerResponse) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));

  it('refuses a discovery URL that answers with a redirect (Better Auth would follow it to another issuer)', async () => {
    for (const code of [301, 302, 307, 308]) {
      const { status, errors } = await statusFor((res) =>
        res.writeHead(code, { location: 'https://attacker.example/.well-known/openid-configuration' }).end(),
      );
      expect(status, String(code)).toBe('mismatch');
      expect(errors, String(code)).toHaveLength(1);
    }
  });

  it('refuses a 4xx, a document that is not JSON, not an object, or has no issuer', async () => {
    const answers: Record<string, (res: ServerResponse) => void> = {
      '404': (res) => res.writeHead(404).end('not found'),
      html: (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>'),
      null: json(null),
      array: json(['issuer']),
      'no issuer': json({ authorization_endpoint: `${base}/auth` }),
    };
    for (const [name, respond] of Object.entries(answers)) {
      expect((await statusFor(respond)).status, name).toBe('mismatch');
    }
  });

  it('lets a sign-in go on (unreachable) on a 5xx, a 429 or a dropped connection, and nothing is logged', async () => {
    const outage = await statusFor((res) => res.writeHead(503).end());
    expect(outage).toEqual({ status: 'unreachable', errors: [] });
    // Rate limited: no verdict on the document, and no 5-minute refusal of the provider for it.
    const busy = await statusFor((res) => res.writeHead(429, { 'retry-after': '1' }).end());
    expect(busy).toEqual({ status: 'unreachable', errors: [] });
    const closed = await statusFor((res) => res.socket?.destroy());
    expect(closed).toEqual({ status: 'unreachable', errors: [] });
  });
});
