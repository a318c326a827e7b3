import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EMAIL_PATTERN, LOOKUP_EMAIL_PATTERN } from '../../../src/accounts/email-address.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// Regression: the email fields took any text around an @ (`Someone <victim@example.com>`, `a@x.com,b@y.com`). A mail
// library reads that as a display name or a list: the mail reached victim@example.com while the send limits counted
// the raw string (a new slot per spelling), and the verification email printed the registrant's text in its body.
describe('email fields take a bare address only', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { magic_link: { enabled: true } } });
  });
  afterAll(() => t?.close());

  const ROUTES = [
    '/auth/register',
    '/auth/login',
    '/auth/password/forgot',
    '/auth/email/verify/resend',
    '/auth/magic-link',
  ];
  const post = (url: string, email: string) =>
    t.app.inject({ method: 'POST', url, payload: { email, password: 'SecurePassword123!', name: 'N' } });

  const HOSTILE = [
    'x3<victim@example.com>',
    'Someone <victim@example.com>',
    '"Some One" <victim@example.com>',
    'a@example.com,victim@example.com',
    'a@example.com;victim@example.com',
    'victim@example.com (comment)',
    'alert:restore_at_https://evil.example<victim@example.com>',
    '"quoted"@example.com',
    'a\\b@example.com',
    'victim@[127.0.0.1]',
    'a b@example.com',
    `${'a'.repeat(250)}@example.com`,
  ];
  it.each(ROUTES)('%s refuses display names, lists, comments and quotes with VALIDATION_FAILED', async (url) => {
    for (const email of HOSTILE) {
      const res = await post(url, email);
      expect(res.statusCode, email).toBe(400);
      expect(res.json().error, email).toMatchObject({ code: 'VALIDATION_FAILED', field: 'email' });
    }
  });

  it('takes the addresses people have: plus tags, dots, apostrophes, hyphens', async () => {
    for (const email of [
      `first.last+tag-${Date.now()}@example.com`,
      `o'brien-${Date.now()}@sub.example.co.uk`,
      `  spaced-${Date.now()}@example.com  `,
    ]) {
      const res = await post('/auth/register', email);
      expect(res.statusCode, `${email}: ${res.body}`).toBe(201);
    }
    // Internationalised addresses are refused as Better Auth refuses them, but with the field named.
    const idn = await post('/auth/register', 'josé@exämple.de');
    expect(idn.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'email' });
    const options = await t.app.inject({ url: '/auth/passkey/authenticate/options?email=a%3Cb%40example.com%3E' });
    expect(options.json().error).toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  // Regression: the schema took addresses Better Auth's sign-up refuses (z.email()), which then answered an opaque
  // 400 BAD_REQUEST without a field.
  it('refuses what Better Auth would, with VALIDATION_FAILED naming email', async () => {
    for (const email of ['a!b@example.com', 'x@localhost', 'first..last@example.com', 'a#b@example.com']) {
      const res = await post('/auth/register', email);
      expect(res.statusCode, email).toBe(400);
      expect(res.json().error, email).toMatchObject({ code: 'VALIDATION_FAILED', field: 'email' });
    }
  });
});

// Regression: 5b46d7e narrowed the one Email schema to what Better Auth's sign-up takes, and /auth/login and
// /auth/password/forgot used it too: an account stored under the earlier rule (`create-user --email ops@localhost`)
// could neither sign in nor reset its password (400 VALIDATION_FAILED). Lookups take any bare address again.
describe('an address stored under the earlier, wider rule', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { magic_link: { enabled: true } } });
  });
  afterAll(() => t?.close());

  const LOOKUPS = ['/auth/password/forgot', '/auth/email/verify/resend', '/auth/magic-link'];
  const post = (url: string, payload: object) => t.app.inject({ method: 'POST', url, payload });

  it('signs in with its password, and every lookup route takes it', async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE users SET email = 'ops@localhost' WHERE id = $1`, [user.userId]);
    const login = await post('/auth/login', { email: ' OPS@localhost ', password: user.password });
    expect(login.statusCode, login.body).toBe(200);
    expect(login.json().userId).toBe(user.userId);
    for (const url of LOOKUPS) {
      const res = await post(url, { email: 'ops@localhost' });
      expect(res.statusCode, `${url}: ${res.body}`).toBeLessThan(300);
    }
    const options = await t.app.inject({ url: '/auth/passkey/authenticate/options?email=ops%40localhost' });
    expect(options.statusCode, options.body).toBe(200);
    // Registration still refuses it: no new account gets an address Better Auth's sign-up would refuse.
    const register = await post('/auth/register', { email: 'new@localhost', password: 'SecurePassword123!' });
    expect(register.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'email' });
  });

  it('answers an address no account can have as it answers an unknown one, with the same argon2 work', async () => {
    const hash = vi.spyOn(t.app.hasher, 'hash');
    const verify = vi.spyOn(t.app.hasher, 'verify');
    const answers = async (email: string) => {
      hash.mockClear();
      verify.mockClear();
      const login = await post('/auth/login', { email, password: 'WrongPassword123!' });
      const work = { hash: hash.mock.calls.length, verify: verify.mock.calls.length };
      const lookups = [];
      for (const url of LOOKUPS) {
        const res = await post(url, { email });
        lookups.push([url, res.statusCode, res.json()]);
      }
      return { login: [login.statusCode, login.json()], work, lookups };
    };
    const tag = Date.now();
    const strict = await answers(`nobody-${tag}@example.com`);
    expect(strict.login).toEqual([
      401,
      expect.objectContaining({ error: expect.objectContaining({ code: 'INVALID_CREDENTIALS' }) }),
    ]);
    expect(strict.work).toEqual({ hash: 1, verify: 0 });
    for (const email of [`nobody-${tag}@localhost`, `a!b-${tag}@example.com`, `first..last-${tag}@example.com`]) {
      expect(await answers(email), email).toEqual(strict);
    }
    hash.mockRestore();
    verify.mockRestore();
  });
});

// The verdicts of z.email() (zod 4), which Better Auth's sign-up body applies: EMAIL_PATTERN must agree on each, with
// or without surrounding spaces, as the schema (Ajv, unicode) and the CLI (no flags) compile it.
describe("EMAIL_PATTERN agrees with Better Auth's z.email()", () => {
  const VERDICTS: [string, boolean][] = [
    ['user@example.com', true],
    ['first.last+tag@example.com', true],
    ["o'brien@sub.example.co.uk", true],
    ["a'b.c'd@example.com", true],
    ['a_b-c@ex-ample.io', true],
    ['A.B.C@EXAMPLE.COM', true],
    ['-@example.com', true],
    ['x@a.bc', true],
    ['a@ex-.com', true],
    ['a!b@example.com', false],
    ['a#b@example.com', false],
    ['a%b@example.com', false],
    ['a/b@example.com', false],
    ['a=b@example.com', false],
    ['x@localhost', false],
    ['first..last@example.com', false],
    ['.lead@example.com', false],
    ['trail.@example.com', false],
    ["quote'@example.com", false],
    ['a@-example.com', false],
    ['a@.example.com', false],
    ['a@example..com', false],
    ['a@example.com.', false],
    ['a@example.c', false],
    ['a@example.123', false],
    ['a@exa_mple.com', false],
    ['josé@exämple.de', false],
    ['a@b@example.com', false],
    ['@example.com', false],
    ['a@', false],
  ];
  it.each(['u', ''])('flags %j', (flags) => {
    const pattern = new RegExp(EMAIL_PATTERN, flags);
    for (const [email, valid] of VERDICTS) {
      expect(pattern.test(email), email).toBe(valid);
      expect(pattern.test(`  ${email} `), email).toBe(valid);
    }
  });

  // Every account made now can be looked up: sign-in and reset take each address registration takes.
  it('LOOKUP_EMAIL_PATTERN takes every address EMAIL_PATTERN does', () => {
    const lookup = new RegExp(LOOKUP_EMAIL_PATTERN, 'u');
    for (const [email, valid] of VERDICTS) if (valid) expect(lookup.test(email), email).toBe(true);
  });
});
