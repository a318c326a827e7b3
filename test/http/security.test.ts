import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stripQuery } from '../../src/http/logging.js';
import { helmetHeaders } from '../../src/http/security.plugin.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

describe('CORS and security headers', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { server: { trusted_origins: ['http://localhost:5173'] } } });
  });
  afterAll(() => t?.close());

  it('a trusted origin gets CORS with credentials, and the token header is exposed', async () => {
    const res = await t.app.inject({
      method: 'OPTIONS',
      url: '/auth/login',
      headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    expect(res.headers['access-control-allow-credentials']).toBe('true');
    const get = await t.app.inject({ url: '/auth/health', headers: { origin: 'http://localhost:5173' } });
    expect(String(get.headers['access-control-expose-headers'])).toContain('X-Auth-Token');
  });

  it('an OPTIONS request that is not a preflight gets 204 and no CORS grant', async () => {
    for (const headers of [{}, { origin: 'http://localhost:5173' }, { 'access-control-request-method': 'POST' }]) {
      const res = await t.app.inject({ method: 'OPTIONS', url: '/auth/login', headers });
      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      if (!('origin' in headers)) expect(res.headers['access-control-allow-origin']).toBeUndefined();
    }
  });

  it('an untrusted origin gets no CORS headers (also on Better Auth routes)', async () => {
    for (const url of ['/auth/health', '/api/auth/get-session']) {
      const res = await t.app.inject({ url, headers: { origin: 'https://evil.example' } });
      expect(res.headers['access-control-allow-origin'], url).toBeUndefined();
    }
  });

  it('sends security headers on answers, errors and Better Auth routes alike', async () => {
    for (const res of [
      await t.app.inject({ url: '/auth/health' }),
      await t.app.inject({ url: '/auth/session' }), // 401
      await t.app.inject({ method: 'POST', url: '/auth/login', payload: '{' }), // 400 from the body parser
      await t.app.inject({ url: '/api/auth/get-session' }),
    ]) {
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      // The strictest policy: the API serves JSON, never a page.
      expect(res.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['cross-origin-resource-policy']).toBe('same-origin');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['strict-transport-security']).toBeUndefined(); // plain-HTTP base URL in tests
      // Headers that only mean something for HTML documents, or only to browsers long gone, are not sent.
      for (const name of ['x-xss-protection', 'x-download-options', 'x-permitted-cross-domain-policies']) {
        expect(res.headers[name], name).toBeUndefined();
      }
    }
  });

  // Regression: the router's own refusals (a malformed URL) are answered where no hook runs, and went
  // out without the security headers every other answer has.
  it('sends them on the router’s own refusals too (a malformed escape in a path parameter: 400)', async () => {
    const res = await t.app.inject({ url: '/admin/users/%E0%A4%A' });
    expect([res.statusCode, res.json().error.code]).toEqual([400, 'BAD_REQUEST']);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it("computes helmet's headers once, as helmet itself sets them", () => {
    const headers = helmetHeaders({ hsts: { maxAge: 31536000, includeSubDomains: true } });
    expect(headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(headers['content-security-policy']).toContain("default-src 'self'");
    expect(headers['x-powered-by']).toBeUndefined();
  });

  it('logged URLs keep query names but not values', () => {
    expect(stripQuery('/api/auth/verify-email?token=secret123&callbackURL=/x')).toBe(
      '/api/auth/verify-email?token=[redacted]&callbackURL=[redacted]',
    );
    expect(stripQuery('/auth/health')).toBe('/auth/health');
  });
});
