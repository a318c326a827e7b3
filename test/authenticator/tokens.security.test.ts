import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, TEST_SECRET, type TestApp } from '../helpers/test-app.js';

const b64 = (v: object | string) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const sign = (alg: string, header: object, payload: object, secret: string) => {
  const data = `${b64(header)}.${b64(payload)}`;
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256';
  return `${data}.${createHmac(hash, secret).update(data).digest('base64url')}`;
};
const decode = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;

describe('session tokens (HS256 JWT)', () => {
  let t: TestApp;
  let user: Awaited<ReturnType<typeof registerUser>>;
  let claims: Record<string, unknown>;
  beforeAll(async () => {
    t = await createTestApp();
    user = await registerUser(t.app);
    claims = decode(user.token);
  });
  afterAll(() => t?.close());

  const session = (token: string) =>
    t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });

  it('carries sub = user id, sid = session id, iat and exp = 7 days, signed HS256', async () => {
    const header = JSON.parse(Buffer.from(user.token.split('.')[0] ?? '', 'base64url').toString());
    expect(header.alg).toBe('HS256');
    expect(claims.sub).toBe(user.userId);
    const { rows } = await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [user.userId]);
    expect(claims.sid).toBe(rows[0]?.id);
    expect((claims.exp as number) - (claims.iat as number)).toBeGreaterThanOrEqual(604800 - 5);
    expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(604800 + 5);
    expect((await session(user.token)).statusCode).toBe(200);
  });

  it('a correctly signed copy of the token is accepted (control for the attacks below)', async () => {
    expect((await session(sign('HS256', { alg: 'HS256', typ: 'JWT' }, claims, TEST_SECRET))).statusCode).toBe(200);
  });

  it.each([
    ['alg none', () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`],
    ['alg none with a signature', () => `${b64({ alg: 'none' })}.${b64(claims)}.${user.token.split('.')[2]}`],
    ['HS384 with the right secret', () => sign('HS384', { alg: 'HS384', typ: 'JWT' }, claims, TEST_SECRET)],
    ['HS512 with the right secret', () => sign('HS512', { alg: 'HS512', typ: 'JWT' }, claims, TEST_SECRET)],
    ['RS256 header over an HMAC signature', () => sign('HS256', { alg: 'RS256', typ: 'JWT' }, claims, TEST_SECRET)],
    [
      'a wrong secret',
      () => sign('HS256', { alg: 'HS256', typ: 'JWT' }, claims, 'another-secret-of-enough-length-123456'),
    ],
    [
      'a tampered payload',
      () => {
        const [h, , s] = user.token.split('.');
        return `${h}.${b64({ ...claims, sub: 'dev-user-001' })}.${s}`;
      },
    ],
    [
      'an expired token',
      () =>
        sign(
          'HS256',
          { alg: 'HS256', typ: 'JWT' },
          { ...claims, exp: Math.floor(Date.now() / 1000) - 10 },
          TEST_SECRET,
        ),
    ],
    [
      'another user’s id with a valid signature',
      () => sign('HS256', { alg: 'HS256', typ: 'JWT' }, { ...claims, sub: 'user_1_x' }, TEST_SECRET),
    ],
    [
      'an unknown session id',
      () => sign('HS256', { alg: 'HS256', typ: 'JWT' }, { ...claims, sid: 'sess_1_nope' }, TEST_SECRET),
    ],
    [
      'a token without sid',
      () => sign('HS256', { alg: 'HS256', typ: 'JWT' }, { sub: claims.sub, exp: claims.exp }, TEST_SECRET),
    ],
    ['garbage', () => 'eyJ.eyJ.x'],
  ])('refuses %s with 401 INVALID_TOKEN', async (_label, forge) => {
    const res = await session(forge());
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_TOKEN');
  });

  it('refuses the token once its session row has expired, though the JWT has not', async () => {
    const other = await registerUser(t.app);
    await t.db.query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1", [other.userId]);
    expect((await session(other.token)).statusCode).toBe(401);
  });

  it('extends a session used after update_age and hands out a renewed token in X-Auth-Token', async () => {
    const other = await registerUser(t.app);
    // The session is 2 days old: 5 days left of 7, past the 24 h update age.
    await t.db.query("UPDATE sessions SET expires_at = now() + interval '5 days' WHERE user_id = $1", [other.userId]);
    const res = await session(other.token);
    expect(res.statusCode).toBe(200);
    const renewed = res.headers['x-auth-token'] as string;
    expect(renewed).toMatch(/^eyJ/);
    const { rows } = await t.db.query<{ days: number }>(
      'SELECT extract(epoch FROM expires_at - now()) / 86400 AS days FROM sessions WHERE user_id = $1',
      [other.userId],
    );
    expect(Number(rows[0]?.days)).toBeGreaterThan(6.9);
    expect((decode(renewed).exp as number) * 1000).toBeGreaterThan(Date.now() + 6.9 * 86400_000);
    // The renewed token works, and the old one too until its own expiry.
    expect((await session(renewed)).statusCode).toBe(200);
    const again = await session(other.token);
    expect(again.statusCode).toBe(200);
    expect(again.headers['x-auth-token']).toBeUndefined(); // extended once, not on every request
  });
});

describe('Better Auth cookie sessions on the same routes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('a cookie from /api/auth/sign-in/email works on GET /auth/session and POST /auth/logout', async () => {
    const user = await registerUser(t.app);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: t.config.server.base_url },
      payload: { email: user.email, password: user.password },
    });
    expect(signIn.statusCode).toBe(200);
    expect(signIn.headers['x-auth-token']).toMatch(/^eyJ/); // our JWT for the new session
    expect(signIn.headers['set-auth-token']).toBeUndefined();
    const cookie = (signIn.headers['set-cookie'] as string | string[]).toString().split(';')[0] as string;
    expect(cookie).toMatch(/^better-auth\.session_token=/);

    const me = await t.app.inject({ url: '/auth/session', headers: { cookie } });
    expect(me.statusCode).toBe(200);
    expect(me.json().user.id).toBe(user.userId);

    const out = await t.app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { cookie, origin: t.config.server.base_url },
    });
    expect(out.statusCode).toBe(200);
    expect((await t.app.inject({ url: '/auth/session', headers: { cookie } })).statusCode).toBe(401);
  });

  it('our bearer token works on Better Auth routes (GET /api/auth/session, the design name)', async () => {
    const user = await registerUser(t.app);
    const res = await t.app.inject({ url: '/api/auth/session', headers: { authorization: `Bearer ${user.token}` } });
    expect(res.statusCode).toBe(200);
    expect(res.json().user.id).toBe(user.userId);
  });

  it('sign-out through Better Auth with our bearer ends the session for our token too', async () => {
    const user = await registerUser(t.app);
    const out = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-out',
      headers: {
        authorization: `Bearer ${user.token}`,
        origin: t.config.server.base_url,
        'content-type': 'application/json',
      },
      payload: '{}',
    });
    expect(out.statusCode).toBe(200);
    const res = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${user.token}` } });
    expect(res.statusCode).toBe(401);
  });
});
