import type { InjectOptions } from 'fastify';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loggedUrl, loggerOptions } from '../../src/http/logging.js';
import { startMailingApp } from '../helpers/mailing-app.js';
import { addressOf, linkIn, type SmtpSink } from '../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Drives every route, including failures, with recognisable secrets and proves none reaches a log line
// (the app logs at debug level here).
describe('no secret in any log line', () => {
  let t: TestApp;
  const secrets: string[] = [];
  const secret = (name: string) => {
    const value = `S3cret-${name}-${Math.random().toString(36).slice(2, 10)}`;
    secrets.push(value);
    return value;
  };
  const origin = 'http://localhost:3000';
  const json = { 'content-type': 'application/json', origin };

  beforeAll(async () => {
    t = await createTestApp({
      config: {
        lockout: { max_failures: 2 },
        rate_limit: { enabled: true, rules: [{ prefix: '/auth/register', max: 3, window: 60 }] },
        metrics: { token: 'metrics-token-S3cret-value' },
      },
    });
    secrets.push('metrics-token-S3cret-value');
  });
  afterAll(() => t?.close());

  /** Every token, cookie and header value the gateway handed out must stay out of the log as well. */
  const collect = <R extends { headers: Record<string, unknown>; body: string }>(res: R): R => {
    const token = res.headers['x-auth-token'];
    if (typeof token === 'string') secrets.push(token);
    for (const c of ([] as string[]).concat((res.headers['set-cookie'] as string[] | string | undefined) ?? [])) {
      const value = /^[^=]+=([^;]*)/.exec(c)?.[1];
      if (value && value.length > 8) secrets.push(decodeURIComponent(value).split('.')[0] as string);
    }
    try {
      const body = JSON.parse(res.body) as { token?: string };
      if (typeof body.token === 'string') secrets.push(body.token);
    } catch {
      // not JSON
    }
    return res;
  };

  it('drives the routes', async () => {
    const email = 'redact@example.com';
    const password = secret('password');
    const reg = collect(
      await t.app.inject({ method: 'POST', url: '/auth/register', payload: { email, password, name: 'R' } }),
    );
    expect(reg.statusCode).toBe(201);
    const token = reg.json().token as string;

    const inject = async (opts: InjectOptions) => collect(await t.app.inject(opts));
    const bearer = { authorization: `Bearer ${token}` };

    await inject({ method: 'POST', url: '/auth/register', payload: { email, password: secret('dup-password') } });
    await inject({ method: 'POST', url: '/auth/register', payload: { email: 'x', password: secret('short') } });
    await inject({ method: 'POST', url: '/auth/register', payload: { email: 'y@example.com', password: 'short' } });
    await inject({ method: 'POST', url: '/auth/login', payload: { email, password } });
    await inject({ method: 'POST', url: '/auth/login', payload: { email, password: secret('wrong-1') } });
    await inject({ method: 'POST', url: '/auth/login', payload: { email, password: secret('wrong-2') } });
    await inject({ method: 'POST', url: '/auth/login', payload: { email, password: secret('locked') } });
    await inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: `{"email":"${email}","password":"${secret('badjson')}"`,
    });
    await inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `email=a&password=${secret('form')}`,
    });
    await inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email, password: secret('oversized').padEnd(200_000, 'x') },
    });
    await inject({ url: '/auth/session', headers: bearer });
    await inject({ url: '/auth/session', headers: { authorization: `Bearer ${secret('garbage-token')}` } });
    await inject({ url: '/auth/session', headers: { authorization: `Bearer eyJ${secret('jwtish')}.eyJx.sig` } });
    await inject({ url: '/auth/session', headers: { cookie: `better-auth.session_token=${secret('cookie')}` } });
    await inject({ url: `/auth/session?token=${secret('query')}` });
    await inject({ url: '/auth/audit?limit=5', headers: bearer });
    await inject({ url: `/auth/audit?cursor=${secret('cursor')}`, headers: bearer });
    await inject({ url: '/auth/health', headers: { 'x-telegram-bot-api-secret-token': secret('telegram') } });
    await inject({ url: '/metrics', remoteAddress: '127.0.0.1', headers: { authorization: `Bearer ${secret('m')}` } });
    await inject({
      url: '/metrics',
      remoteAddress: '127.0.0.1',
      headers: { authorization: 'Bearer metrics-token-S3cret-value' },
    });

    const apiUser = 'api-redact@example.com';
    const apiPassword = secret('api-password');
    await inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      headers: json,
      payload: JSON.stringify({ email: apiUser, password: apiPassword, name: 'A' }),
    });
    const signIn = await inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: json,
      payload: JSON.stringify({ email: apiUser, password: apiPassword }),
    });
    expect(signIn.statusCode).toBe(200);
    await inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: json,
      payload: JSON.stringify({ email: apiUser, password: secret('api-wrong') }),
    });
    await inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: json,
      payload: `{"password":"${secret('api-bad')}"`,
    });
    await inject({ url: '/api/auth/get-session', headers: bearer });
    await inject({ url: '/api/auth/get-session', headers: { authorization: `Bearer ${secret('api-bearer')}` } });
    await inject({
      url: '/api/auth/get-session',
      headers: { cookie: `better-auth.session_token=${secret('api-cookie')}` },
    });
    await inject({ url: `/api/auth/verify-email?token=${secret('verify')}&callbackURL=/` });
    // A sign-in link's page, its button's form and the same token as JSON (unknown tokens: the failure path).
    await inject({ url: `/auth/magic-link/verify?token=${secret('magic-page')}` });
    await inject({
      method: 'POST',
      url: '/auth/magic-link/verify',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=${secret('magic-form')}`,
    });
    await inject({ method: 'POST', url: '/auth/magic-link/verify', payload: { token: secret('magic-json') } });
    await inject({ method: 'POST', url: '/auth/logout', headers: bearer });
    await inject({ method: 'POST', url: '/auth/logout', headers: bearer }); // a revoked token
    for (let i = 0; i < 3; i++) {
      await inject({
        method: 'POST',
        url: '/auth/register',
        payload: { email: `rl${i}@example.com`, password: secret(`rl${i}`) },
      });
    }
  });

  it('wrote log lines, none of them with a secret', () => {
    expect(t.logs.lines.length).toBeGreaterThan(40);
    expect(t.logs.text).toContain('"reqId"'); // a request id on request lines
    expect(secrets.length).toBeGreaterThan(30);
    for (const s of secrets) {
      const line = t.logs.lines.find((l) => l.includes(s));
      expect(line, `secret ${s.slice(0, 20)}... found in a log line`).toBeUndefined();
    }
  });
});

// Regression: Better Auth's reset link GET /api/auth/reset-password/:token carries the token in its path, and the
// "incoming request" line logged it (only query values were redacted); the logged token then reset the password.
describe('no reset token from a path in any log line', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp());
  });
  afterAll(() => close?.());

  it('redacts the path after a secret segment, however the path is spelled', () => {
    expect(loggedUrl('/api/auth/reset-password/T0KEN?callbackURL=/x')).toBe(
      '/api/auth/reset-password/[redacted]?callbackURL=[redacted]',
    );
    for (const spelling of [
      '/api/auth/reset-password/T0KEN/',
      '/api/auth/./reset-password/T0KEN',
      '/api/auth/reset-password/./T0KEN',
      '/api/auth/reset-password//T0KEN',
      '/api/auth/reset-password\\T0KEN',
      '/api/auth/Reset-Password/T0KEN',
      '/api/auth/reset%2Dpassword/T0KEN',
      '/api/auth/reset-password/../reset-password/T0KEN',
    ]) {
      expect(loggedUrl(spelling), spelling).not.toContain('T0KEN');
      expect(loggedUrl(`${spelling}?a=b`), spelling).not.toContain('T0KEN');
    }
    // The rest of a path is kept: the POST route without a parameter, and paths without a secret.
    expect(loggedUrl('/api/auth/reset-password')).toBe('/api/auth/reset-password');
    expect(loggedUrl('/api/auth/reset-password/')).toBe('/api/auth/reset-password/');
    expect(loggedUrl('/api/auth/callback/github?code=c&state=s')).toBe(
      '/api/auth/callback/github?code=[redacted]&state=[redacted]',
    );
    expect(loggedUrl('/admin/users/user_1/license')).toBe('/admin/users/user_1/license');
  });

  it("logs neither a real token followed through Better Auth's link nor a guessed one", async () => {
    const user = await registerUser(t.app);
    const forgot = await t.app.inject({
      method: 'POST',
      url: '/auth/password/forgot',
      payload: { email: user.email },
    });
    expect(forgot.statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => addressOf(m) === user.email);
    const token = linkIn(mail, '/reset-password').searchParams.get('token') ?? '';
    expect(token.length).toBeGreaterThan(10);

    const link = await t.app.inject({ url: `/api/auth/reset-password/${token}?callbackURL=/new-password` });
    expect(link.statusCode).toBe(302);
    expect(link.headers.location).toBe(`${t.config.server.base_url}/new-password?token=${token}`); // a good token
    const guessed = ['G4essed-1', 'G4essed-2', 'G4essed-3'];
    await t.app.inject({ url: `/api/auth/./reset-password/${guessed[0]}/?callbackURL=/x` });
    await t.app.inject({ url: `/api/auth/reset-password/${guessed[1]}/more` });
    await t.app.inject({ url: `/api/auth/RESET-PASSWORD/${guessed[2]}` });

    const incoming = t.logs.lines.filter((l) => l.includes('incoming request') && /reset-password\//i.test(l));
    expect(incoming.length).toBeGreaterThanOrEqual(4);
    expect(incoming[0]).toContain('"url":"/api/auth/reset-password/[redacted]?callbackURL=[redacted]"');
    for (const s of [token, ...guessed]) expect(t.logs.text).not.toContain(s);
  });
});

describe('database errors in log lines', () => {
  it("keep their message, not the failing statement's values", async () => {
    const lines: string[] = [];
    const logger = { ...(loggerOptions('info') as object), stream: { write: (line: string) => lines.push(line) } };
    const app = Fastify({ logger });
    // As PGlite's and pg's errors carry them: the statement's parameters, and a detail quoting the row or key.
    const err = Object.assign(new Error('duplicate key value violates unique constraint "sessions_token_key"'), {
      code: '23505',
      params: ['sess_1', 'S3cret-session-token'],
      detail: 'Key (token)=(S3cret-session-token) already exists.',
    });
    app.log.error({ err }, 'request failed');
    app.log.error({ err: new Error('wrapped', { cause: err }) }, 'request failed');
    await app.close();
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).not.toContain('S3cret');
    expect(JSON.parse(lines[0] as string).err.message).toContain('sessions_token_key');
  });
});
