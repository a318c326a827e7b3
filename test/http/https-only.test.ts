import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestApp,
  createTestDatabase,
  registerUser,
  type TestApp,
  type TestDatabase,
  testConfig,
} from '../helpers/test-app.js';

// One database for the file (each app below gets its own config on it): fewer embedded databases to start.
let shared: TestDatabase;
beforeAll(async () => {
  shared = await createTestDatabase();
});
afterAll(() => shared?.drop());

describe('server.https_only default', () => {
  it('is on when NODE_ENV=production and off otherwise', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'gw-https-'));
    expect(testConfig(dir, {}, { NODE_ENV: 'production' }).server.https_only).toBe(true);
    expect(testConfig(dir).server.https_only).toBe(false);
  });
});

describe('server.https_only: true behind a trusted proxy', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ shared, config: { server: { https_only: true, trust_proxy: '127.0.0.1' } } });
  });
  afterAll(() => t?.close());

  const viaProxy = (url: string, proto: string, remoteAddress = '127.0.0.1', extra: object = {}) =>
    t.app.inject({ url, remoteAddress, headers: { 'x-forwarded-proto': proto }, ...extra });

  it('refuses plain HTTP with 403 HTTPS_REQUIRED on every route and method, health excepted', async () => {
    for (const [method, url] of [
      ['POST', '/auth/login'],
      ['GET', '/auth/session'],
      ['GET', '/api/auth/get-session'],
      ['GET', '/metrics'],
      ['GET', '/no/such/route'],
    ] as const) {
      const res = await viaProxy(url, 'http', '127.0.0.1', { method });
      expect(res.statusCode, url).toBe(403);
      expect(res.json().error.code).toBe('HTTPS_REQUIRED');
    }
    expect((await viaProxy('/auth/health', 'http')).statusCode).toBe(200);
  });

  it('believes X-Forwarded-Proto only from the trusted proxy', async () => {
    const spoofed = await viaProxy('/auth/session', 'https', '192.0.2.9');
    expect(spoofed.statusCode).toBe(403);
    expect(spoofed.json().error.code).toBe('HTTPS_REQUIRED');
    const plain = await t.app.inject({ url: '/auth/session', remoteAddress: '192.0.2.9' });
    expect(plain.statusCode).toBe(403);
  });

  it('over HTTPS: HSTS on every answer, Secure cookies from Better Auth', async () => {
    const user = await registerUser(t.app, {}).catch(() => null);
    expect(user).toBeNull(); // registerUser injects plain HTTP: refused
    const reg = await viaProxy('/auth/register', 'https', '127.0.0.1', {
      method: 'POST',
      payload: { email: 'tls@example.com', password: 'SecurePassword123!', name: 'T' },
    });
    expect(reg.statusCode).toBe(201);
    expect(reg.headers['strict-transport-security']).toContain('max-age=31536000');
    const signIn = await viaProxy('/api/auth/sign-in/email', 'https', '127.0.0.1', {
      method: 'POST',
      headers: { 'x-forwarded-proto': 'https', origin: 'http://localhost:3000', 'content-type': 'application/json' },
      payload: JSON.stringify({ email: 'tls@example.com', password: 'SecurePassword123!' }),
    });
    expect(signIn.statusCode).toBe(200);
    const cookies = ([] as string[]).concat(signIn.headers['set-cookie'] ?? []);
    expect(cookies.length).toBeGreaterThan(0);
    for (const c of cookies) expect(c).toMatch(/;\s*Secure/i);
    // Better Auth's own cookies also take the __Secure- prefix; the gateway's device cookie takes __Host-.
    for (const c of cookies.filter((x) => x.includes('better-auth.'))) expect(c).toMatch(/^__Secure-/);
    expect(cookies.some((c) => c.startsWith('__Host-gateway_device='))).toBe(true);
  });

  // base_url stays http:// here (the docker-compose default under NODE_ENV=production): the two-factor challenge is
  // still found under the __Secure- cookie name Better Auth gives it.
  it('a two-factor sign-in works: challenge on /auth/login, token on /auth/2fa/verify', async () => {
    const https = (url: string, payload: object, token?: string) =>
      viaProxy(url, 'https', '127.0.0.1', {
        method: 'POST',
        payload,
        headers: { 'x-forwarded-proto': 'https', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      });
    const email = 'tls-2fa@example.com';
    const password = 'SecurePassword123!';
    const { token } = (await https('/auth/register', { email, password, name: 'T' })).json();
    const { otpauthUri } = (await https('/auth/2fa/enable', { password }, token)).json();
    const totp = OTPAuth.URI.parse(otpauthUri) as OTPAuth.TOTP;
    expect((await https('/auth/2fa/confirm', { code: totp.generate() }, token)).statusCode).toBe(200);

    const login = await https('/auth/login', { email, password });
    expect(login.statusCode).toBe(200);
    expect(login.json()).toMatchObject({ twoFactorRequired: true, challengeToken: expect.any(String) });
    const verified = await https('/auth/2fa/verify', {
      challengeToken: login.json().challengeToken,
      // The next step's code: each step's is accepted once, and the confirmation used this one.
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    expect(verified.statusCode).toBe(200);
    expect(verified.json().token).toMatch(/^eyJ/);
  });
});

describe('server.https_only: false', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ shared, config: { server: { https_only: false } } });
  });
  afterAll(() => t?.close());

  it('serves plain HTTP without HSTS', async () => {
    const res = await t.app.inject({ url: '/auth/health' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['strict-transport-security']).toBeUndefined();
    expect((await t.app.inject({ method: 'POST', url: '/auth/login', payload: {} })).statusCode).toBe(400);
  });
});
