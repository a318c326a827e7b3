import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consoleCsp, PUBLIC_DIR } from '../../src/console/console.plugin.js';
import { DOCS_CSP } from '../../src/docs/docs.plugin.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

describe('console routes', () => {
  let t: TestApp;
  let token: string;
  const uri = 'otpauth://totp/Gateway:user%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Gateway';

  beforeAll(async () => {
    t = await createTestApp();
    ({ token } = await registerUser(t.app));
  });
  afterAll(async () => {
    await t?.close();
  });

  it('serves the console at / with its own CSP, also on a 304 revalidation', async () => {
    const csp = consoleCsp(t.config.server.base_url);
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe');
    const first = await t.app.inject({ method: 'GET', url: '/' });
    expect(first.statusCode).toBe(200);
    expect(first.headers['content-type']).toMatch(/^text\/html/);
    expect(first.headers['content-security-policy']).toBe(csp);
    expect(first.headers['cross-origin-opener-policy']).toBe('same-origin'); // a page: the document headers too
    expect(first.headers['x-frame-options']).toBe('DENY');
    expect(first.headers['cache-control']).not.toBe('no-store'); // revalidated by ETag, not refetched
    expect(first.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(first.body).not.toMatch(/\sstyle=/); // no inline style
    const again = await t.app.inject({
      method: 'GET',
      url: '/',
      headers: { 'if-none-match': String(first.headers.etag) },
    });
    expect(again.statusCode).toBe(304);
    expect(again.headers['content-security-policy']).toBe(csp);
  });

  it('keeps the strict API CSP on API routes and on unknown paths', async () => {
    for (const url of ['/auth/health', '/openapi.json', '/no/such/file.js']) {
      const res = await t.app.inject({ method: 'GET', url });
      expect(res.headers['content-security-policy'], url).toMatch(/^default-src 'none'/);
      expect(res.headers['content-security-policy'], url).not.toContain('connect-src');
    }
    const missing = await t.app.inject({ method: 'GET', url: '/no/such/file.js' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ success: false, error: { code: 'NOT_FOUND' } });
  });

  it('serves no file outside public/', async () => {
    for (const url of ['/../package.json', '/%2e%2e/package.json', '/..%2fsecrets.yaml', '/.gitignore']) {
      const res = await t.app.inject({ method: 'GET', url });
      expect([400, 403, 404], url).toContain(res.statusCode);
      expect(res.body, url).not.toContain('"dependencies"');
    }
  });

  // Regression: with `wildcard`, serveDotFiles: false did not stop @fastify/static serving public/.gitkeep (200).
  it('answers a dot-file that exists in public/ as it answers any unknown path', async () => {
    expect(existsSync(join(PUBLIC_DIR, '.gitkeep'))).toBe(true);
    const res = await t.app.inject({ method: 'GET', url: '/.gitkeep' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      success: false,
      error: { code: 'NOT_FOUND', message: 'No route GET /.gitkeep.' },
    });
  });

  it('serves @simplewebauthn/browser as an ES module from node_modules', async () => {
    const entry = await t.app.inject({ method: 'GET', url: '/vendor/simplewebauthn-browser.js' });
    expect(entry.statusCode).toBe(200);
    expect(entry.headers['content-type']).toMatch(/^text\/javascript/);
    const index = await t.app.inject({ method: 'GET', url: '/vendor/simplewebauthn-browser/index.js' });
    expect(index.statusCode).toBe(200);
    expect(index.body).toContain("export * from './methods/startRegistration.js'");
    const notJs = await t.app.inject({ method: 'GET', url: '/vendor/simplewebauthn-browser/package.json' });
    expect(notJs.statusCode).toBe(404);
  });

  it('serves /docs with its own CSP and Scalar only from this server', async () => {
    const page = await t.app.inject({ method: 'GET', url: '/docs' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toBe(DOCS_CSP);
    expect(page.body).toContain('src="/docs/scalar/js/scalar.js"');
    expect(page.body).not.toMatch(/https?:\/\//);
    const script = await t.app.inject({ method: 'GET', url: '/docs/scalar/js/scalar.js' });
    expect(script.statusCode).toBe(200);
    // Scalar's own page (an inline script) is not served.
    expect((await t.app.inject({ method: 'GET', url: '/docs/scalar/' })).statusCode).toBe(404);
  });

  describe('POST /console/qr', () => {
    it('returns an SVG for a signed-in caller, with nothing in it that could run', async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/console/qr',
        headers: { authorization: `Bearer ${token}` },
        payload: { text: uri },
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^image\/svg\+xml/);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      expect(res.body).not.toMatch(/<script|style=|on\w+=/i);
    });

    it('refuses a caller who is not signed in', async () => {
      const res = await t.app.inject({ method: 'POST', url: '/console/qr', payload: { text: uri } });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error: { code: 'AUTH_REQUIRED' } });
    });

    it('renders only otpauth URIs of a sane length', async () => {
      const headers = { authorization: `Bearer ${token}` };
      for (const text of ['https://example.com/', `otpauth://totp/x?secret=${'A'.repeat(2000)}`, '']) {
        const res = await t.app.inject({ method: 'POST', url: '/console/qr', headers, payload: { text } });
        expect(res.statusCode, text.slice(0, 30)).toBe(400);
        expect(res.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED', field: 'text' } });
      }
      const none = await t.app.inject({ method: 'POST', url: '/console/qr', headers, payload: {} });
      expect(none.statusCode).toBe(400);
    });

    it('keeps the URI (a TOTP secret) out of the logs', async () => {
      await t.app.inject({
        method: 'POST',
        url: '/console/qr',
        headers: { authorization: `Bearer ${token}` },
        payload: { text: uri },
      });
      expect(t.logs.text).not.toContain('JBSWY3DPEHPK3PXP');
    });
  });
});
