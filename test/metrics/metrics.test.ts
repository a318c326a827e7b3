import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import {
  createTestApp,
  createTestDatabase,
  registerUser,
  type TestApp,
  type TestDatabase,
} from '../helpers/test-app.js';
import { connect, listen } from '../helpers/ws-client.js';
import { addPasskey, assertion, postAuthentication } from '../passkeys/helpers.js';

// One database for the file (each app below gets its own config on it): fewer embedded databases to start.
let shared: TestDatabase;
beforeAll(async () => {
  shared = await createTestDatabase();
});
afterAll(() => shared?.drop());

/** Prometheus text format -> "name{labels}" -> value; comment lines dropped. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    samples.set(m[1] as string, Number(m[2]));
  }
  return samples;
}

describe('GET /metrics', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      config: {
        lockout: { max_failures: 2 },
        rate_limit: { enabled: true, rules: [{ prefix: '/auth/login', max: 50, window: 60 }] },
        metrics: { token: 'metrics-token-for-tests', allowed_ips: ['127.0.0.1', '10.1.0.0/16'] },
      },
    });
  });
  afterAll(() => t?.close());

  const scrape = async () => {
    const res = await t.app.inject({
      url: '/metrics',
      remoteAddress: '10.1.2.3',
      headers: { authorization: 'Bearer metrics-token-for-tests' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    return parse(res.body);
  };

  it('counts sign-ins by method, channel and outcome, lockouts, and times requests by route pattern', async () => {
    const user = await registerUser(t.app);
    const login = (password: string) =>
      t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password } });
    expect((await login(user.password)).statusCode).toBe(200);
    expect((await login('wrong-1')).statusCode).toBe(401);
    expect((await login('wrong-2')).statusCode).toBe(401);
    expect((await login(user.password)).statusCode).toBe(429);
    await t.app.inject({ url: '/auth/session', headers: { authorization: 'Bearer not.a.jwt' } });
    await t.app.inject({ url: '/no/such/route/12345' });

    const m = await scrape();
    expect(m.get('gateway_login_attempts_total{method="password",channel="rest",outcome="success"}')).toBe(1);
    expect(m.get('gateway_login_attempts_total{method="password",channel="rest",outcome="failure"}')).toBe(2);
    expect(m.get('gateway_login_attempts_total{method="password",channel="rest",outcome="locked"}')).toBe(1);
    expect(m.get('gateway_lockouts_total')).toBe(1);
    expect(m.get('gateway_websocket_connections')).toBe(0);
    expect(
      m.get('gateway_http_request_duration_seconds_count{method="POST",route="/auth/login",status_code="401"}'),
    ).toBe(2);
    expect(
      m.get('gateway_http_request_duration_seconds_count{method="GET",route="/auth/session",status_code="401"}'),
    ).toBe(1);
    // Unmatched URLs share one label: raw paths never become label values.
    expect([...m.keys()].some((k) => k.includes('12345'))).toBe(false);
    expect(m.get('gateway_http_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}')).toBe(
      1,
    );
  });

  it('counts every sign-in route the way it audits it: once, by method', async () => {
    const metric = async (method: string, outcome: string) =>
      (await scrape()).get(`gateway_login_attempts_total{method="${method}",channel="rest",outcome="${outcome}"}`) ?? 0;
    const post = (url: string, payload: object, token?: string) =>
      t.app.inject({ method: 'POST', url, payload, headers: token ? { authorization: `Bearer ${token}` } : {} });

    // A password sign-in with 2FA is one attempt: counted when the code completes it, not also at the challenge.
    const user = await registerUser(t.app);
    const { otpauthUri } = (await post('/auth/2fa/enable', { password: user.password }, user.token)).json();
    const totp = OTPAuth.URI.parse(otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    const before = await metric('password', 'success');
    const challenge = await post('/auth/login', { email: user.email, password: user.password });
    expect(challenge.json().twoFactorRequired).toBe(true);
    expect(await metric('password', 'success')).toBe(before);
    const verified = await post('/auth/2fa/verify', {
      challengeToken: challenge.json().challengeToken,
      // The next step's code: each step's is accepted once, and the confirmation used this one.
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    expect(verified.statusCode).toBe(200);
    expect(await metric('password', 'success')).toBe(before + 1);

    // Better Auth's own sign-in route counts like ours.
    const other = await registerUser(t.app);
    const failures = await metric('password', 'failure');
    const api = await post('/api/auth/sign-in/email', { email: other.email, password: 'Wrong-password-1' });
    expect(api.statusCode).toBe(401);
    expect(await metric('password', 'failure')).toBe(failures + 1);

    // Methods other than the password count under their own name.
    const link = await t.app.inject({
      method: 'POST',
      url: '/auth/magic-link/verify',
      payload: { token: 'A'.repeat(43) },
    });
    expect(link.statusCode).toBe(400);
    expect(await metric('magic_link', 'failure')).toBe(1);

    // Passkey sign-ins on the design routes: a success, and a refused assertion (its row is passkey.refused).
    const holder = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    await addPasskey(t.app, holder.token, authenticator);
    const [passkeyOk, passkeyFailed] = [await metric('passkey', 'success'), await metric('passkey', 'failure')];
    expect((await postAuthentication(t.app, await assertion(t.app, authenticator))).statusCode).toBe(200);
    const tampered = await assertion(t.app, authenticator, { tamperSignature: true });
    expect((await postAuthentication(t.app, tampered)).statusCode).toBe(401);
    expect(await metric('passkey', 'success')).toBe(passkeyOk + 1);
    expect(await metric('passkey', 'failure')).toBe(passkeyFailed + 1);

    // A session from Better Auth's password sign-in taken to the OAuth completion route, twice: no OAuth sign-in.
    const cookieUser = await registerUser(t.app);
    const signIn = await post('/api/auth/sign-in/email', { email: cookieUser.email, password: cookieUser.password });
    const cookie = ([] as string[])
      .concat(signIn.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .filter((c) => c.startsWith('better-auth.session_token='))
      .join('; ');
    // And one from Better Auth's sign-up.
    const signUp = await post('/api/auth/sign-up/email', {
      email: 'signed-up-here@example.com',
      password: 'SecurePassword123!',
      name: 'S',
    });
    const signUpCookie = ([] as string[])
      .concat(signUp.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .filter((c) => c.startsWith('better-auth.session_token='))
      .join('; ');
    for (const sessionCookie of [cookie, cookie, signUpCookie]) {
      const complete = await t.app.inject({ url: '/auth/oauth/complete', headers: { cookie: sessionCookie } });
      expect(complete.statusCode).toBeLessThan(500);
    }
    expect(await metric('oauth', 'success')).toBe(0);
  });

  it('does not count a failure the gateway caused (the database away) as a failed login', async () => {
    const user = await registerUser(t.app);
    const failures = async () =>
      (await scrape()).get('gateway_login_attempts_total{method="password",channel="rest",outcome="failure"}') ?? 0;
    const before = await failures();
    const query = vi
      .spyOn(t.db, 'query')
      .mockRejectedValueOnce(Object.assign(new Error('gone'), { code: 'ECONNREFUSED' }));
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    query.mockRestore();
    expect(res.statusCode).toBe(503);
    expect(await failures()).toBe(before);
  });

  it('counts open WebSocket connections, authenticated or not', async () => {
    const url = `${await listen(t.app)}/ws/chat`;
    const { token } = await registerUser(t.app);
    const signedIn = await connect(url, { authorization: `Bearer ${token}` });
    expect(await signedIn.next()).toMatchObject({ type: 'auth_ok' });
    const waiting = await connect(url); // no auth frame yet
    expect((await scrape()).get('gateway_websocket_connections')).toBe(2);
    signedIn.ws.close();
    waiting.ws.close();
    await vi.waitFor(async () => expect((await scrape()).get('gateway_websocket_connections')).toBe(0));
  });

  it('refuses a wrong or missing token and addresses outside allowed_ips', async () => {
    const from = (remoteAddress: string, authorization?: string) =>
      t.app.inject({ url: '/metrics', remoteAddress, headers: authorization ? { authorization } : {} });
    const noToken = await from('127.0.0.1');
    expect(noToken.statusCode).toBe(401);
    expect(noToken.json().error.code).toBe('AUTH_REQUIRED');
    expect((await from('127.0.0.1', 'Bearer metrics-token-for-test')).json().error.code).toBe('INVALID_TOKEN');
    const outside = await from('192.0.2.1', 'Bearer metrics-token-for-tests');
    expect(outside.statusCode).toBe(403);
    expect(outside.json().error.code).toBe('FORBIDDEN');
    expect(t.logs.text).not.toContain('metrics-token-for-tests');
  });
});

describe('metrics.allowed_ips behind proxies', () => {
  const appWith = (trust: boolean | string) =>
    createTestApp({
      shared,
      config: { server: { trust_proxy: trust }, metrics: { token: '', allowed_ips: ['127.0.0.1', '10.9.0.0/16'] } },
    });
  const scrape = (t: TestApp, remoteAddress: string, forwarded?: string) =>
    t.app.inject({ url: '/metrics', remoteAddress, headers: forwarded ? { 'x-forwarded-for': forwarded } : {} });

  it('trust_proxy true: a client naming an allowed address in X-Forwarded-For is still refused', async () => {
    const t = await appWith(true);
    try {
      // Regression: the client IP Fastify resolved (the left-most entry, the client's own words) was all that counted.
      const spoofed = await scrape(t, '192.0.2.2', '127.0.0.1');
      expect(spoofed.statusCode).toBe(403);
      expect(spoofed.json().error.code).toBe('FORBIDDEN');
      expect((await scrape(t, '10.9.1.1', '10.9.2.2')).statusCode).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('a proxy on loopback: the forwarded client is checked, not only the proxy', async () => {
    for (const trust of [false, 'loopback']) {
      const t = await appWith(trust);
      try {
        expect((await scrape(t, '127.0.0.1', '203.0.113.7')).statusCode).toBe(403);
        expect((await scrape(t, '127.0.0.1', '10.9.0.1, 203.0.113.7')).statusCode).toBe(403);
        expect((await scrape(t, '127.0.0.1', 'not-an-ip')).statusCode).toBe(403);
        expect((await scrape(t, '127.0.0.1')).statusCode).toBe(200);
        expect((await scrape(t, '127.0.0.1', '10.9.0.1')).statusCode).toBe(200);
      } finally {
        await t.close();
      }
    }
  });
});

describe('metrics.enabled: false', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ shared, config: { metrics: { enabled: false } } });
  });
  afterAll(() => t?.close());

  it('serves no /metrics route', async () => {
    const res = await t.app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' });
    expect(res.statusCode).toBe(404);
  });
});
