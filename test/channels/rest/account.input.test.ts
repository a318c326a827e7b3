import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// Malformed, oversized, hostile and out-of-order input to the account and 2FA routes: a 4xx JSON error, never a 500.
describe('account and 2FA routes: hostile input', () => {
  let t: TestApp;
  let token = '';
  beforeAll(async () => {
    t = await createTestApp();
    token = (await registerUser(t.app)).token;
  });
  afterAll(() => t?.close());

  const ROUTES: Array<{ url: string; auth?: boolean }> = [
    { url: '/auth/email/verify' },
    { url: '/auth/email/verify/resend' },
    { url: '/auth/password/forgot' },
    { url: '/auth/password/reset' },
    { url: '/auth/password/change', auth: true },
    { url: '/auth/2fa/enable', auth: true },
    { url: '/auth/2fa/confirm', auth: true },
    { url: '/auth/2fa/disable', auth: true },
    { url: '/auth/2fa/verify' },
  ];
  const BODIES: unknown[] = [
    '{"email":',
    '[]',
    '"string"',
    { email: 42, token: ['x'], code: { $gt: '' }, password: null, challengeToken: 7 },
    {
      email: `${'a'.repeat(300)}@example.com`,
      token: 'a'.repeat(300),
      code: '1'.repeat(40),
      password: 'p'.repeat(2000),
    },
    { email: 'x@example.com\u0000', token: "' OR 1=1 --", code: '../../etc', challengeToken: '\u0000' },
  ];

  it.each(ROUTES)('$url answers 4xx JSON to every bad body', async ({ url, auth }) => {
    for (const body of BODIES) {
      const res = await t.app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) },
        payload: typeof body === 'string' ? body : JSON.stringify(body),
      });
      expect(res.statusCode, `${url} ${JSON.stringify(body)}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${url} ${JSON.stringify(body)}`).toBeLessThan(500);
      expect(res.json().success).toBe(false);
      expect(res.json().error.code).toMatch(/^[A-Z_]+$/);
    }
  });

  it('a new password longer than any can be verified is refused, and the old one still signs in', async () => {
    // 100 astral characters: within the schemas' cap of 128 characters (code points), but 200 UTF-16 units, more than
    // the hasher verifies. Stored, it would be a password nobody can sign in with.
    const long = '\u{1F600}'.repeat(100);
    const user = await registerUser(t.app);
    const change = await t.app.inject({
      method: 'POST',
      url: '/auth/password/change',
      headers: { authorization: `Bearer ${user.token}` },
      payload: { currentPassword: user.password, newPassword: long },
    });
    expect(change.statusCode).toBe(400);
    expect(change.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'newPassword' });
    const login = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    expect(login.statusCode).toBe(200);

    const anonymous = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    const upgrade = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${anonymous.json().token}` },
      payload: { email: `long-${Date.now()}@example.com`, password: long },
    });
    expect(upgrade.statusCode).toBe(400);
    expect(upgrade.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'password' });
  });

  it('signed-in routes refuse callers without a token (401)', async () => {
    const valid: Record<string, object> = {
      '/auth/password/change': { currentPassword: 'x', newPassword: 'LongEnough123!' },
      '/auth/2fa/enable': { password: 'x' },
      '/auth/2fa/confirm': { code: '123456' },
      '/auth/2fa/disable': { code: '123456' },
      '/auth/account/delete': {},
    };
    for (const [url, payload] of Object.entries(valid)) {
      const res = await t.app.inject({ method: 'POST', url, payload });
      expect(res.statusCode, url).toBe(401);
    }
  });

  it('out of order: confirm or disable without enrolment, verify without a challenge', async () => {
    const auth = { authorization: `Bearer ${token}` };
    const confirm = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/confirm',
      payload: { code: '123456' },
      headers: auth,
    });
    expect(confirm.statusCode).toBe(400);
    expect(confirm.json().error.code).toBe('TWO_FACTOR_NOT_ENABLED');
    const disable = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/disable',
      payload: { code: '123456' },
      headers: auth,
    });
    expect(disable.statusCode).toBe(400);
    expect(disable.json().error.code).toBe('TWO_FACTOR_NOT_ENABLED');
    const verify = await t.app.inject({ method: 'POST', url: '/auth/2fa/verify', payload: { code: '123456' } });
    expect(verify.statusCode).toBe(401);
    expect(verify.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');
    const noDot = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/verify',
      payload: { code: '123456', challengeToken: 'nodotatallhere' },
    });
    expect(noDot.statusCode).toBe(401);
    const link = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify',
      payload: { token: 'AAAAAAAAAAAAAAAAAAAAAAAA' },
    });
    expect(link.statusCode).toBe(400);
    expect(link.json().error.code).toBe('INVALID_VERIFICATION_TOKEN');
    // The page of a link posts a form: an unknown token there is a page saying so, in the same status.
    const form = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'token=AAAAAAAAAAAAAAAAAAAAAAAA',
    });
    expect(form.statusCode).toBe(400);
    expect(form.body).toContain('This link cannot be used');
    for (const payload of ['token=%00', 'token=<script>', `token=${'A'.repeat(5000)}`, '%%%', 'token=a&token=b']) {
      const bad = await t.app.inject({
        method: 'POST',
        url: '/auth/email/verify',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload,
      });
      expect([payload.slice(0, 20), bad.statusCode]).toEqual([payload.slice(0, 20), expect.any(Number)]);
      expect(bad.statusCode).toBeGreaterThanOrEqual(400);
      expect(bad.statusCode).toBeLessThan(500);
    }
  });
});
