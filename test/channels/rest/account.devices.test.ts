import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDeviceTrusted } from '../../../src/accounts/devices.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1';

describe('devices: sessions grouped by device key, named, trusted, removed', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { trusted_device_days: 10 } } });
  });
  afterAll(() => t?.close());

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const login = async (user: { email: string; password: string }, headers: Record<string, string> = {}) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': IPHONE, ...headers },
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    return { token: res.json().token as string, key: res.headers['x-device-id'] as string, res };
  };
  const devices = async (token: string) => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/devices', headers: bearer(token) });
    expect(res.statusCode).toBe(200);
    return res.json().devices as Array<{
      id: string;
      name: string;
      trusted: boolean;
      trustedUntil: string | null;
      current: boolean;
      sessions: string[];
    }>;
  };

  it('mints a device key at sign-in (header and HttpOnly cookie); the same key groups later sessions', async () => {
    const user = await registerUser(t.app);
    const first = await login(user);
    expect(first.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const cookie = ([] as string[])
      .concat(first.res.headers['set-cookie'] ?? [])
      .find((c) => c.startsWith('gateway_device='));
    expect(cookie).toContain(`gateway_device=${first.key}`);
    expect(cookie).toContain('HttpOnly');
    const second = await login(user, { 'x-device-id': first.key });
    expect(second.key).toBe(first.key);
    const third = await login(user, { cookie: `gateway_device=${first.key}` });
    expect(third.key).toBe(first.key);

    const list = await devices(second.token);
    const phone = list.find((d) => d.sessions.length === 3);
    expect(phone).toMatchObject({ name: 'Mobile Safari 17 on iOS 17, Apple iPhone', current: true, trusted: false });
    // The key is stored only as a hash.
    const { rows } = await t.db.query<{ key_hash: string }>('SELECT key_hash FROM devices WHERE id = $1', [phone?.id]);
    expect(rows[0]?.key_hash).not.toContain(first.key);
  });

  it("adds its cookie to Better Auth's, once each", async () => {
    const user = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: t.config.server.base_url },
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    const names = ([] as string[]).concat(res.headers['set-cookie'] ?? []).map((c) => c.split('=')[0]);
    expect(names).toContain('better-auth.session_token');
    expect(names).toContain('gateway_device');
    expect(names).toEqual([...new Set(names)]);
  });

  it('files Better Auth sign-ins (/api/auth/*) under the device too', async () => {
    const user = await registerUser(t.app);
    const first = await login(user);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'content-type': 'application/json', 'x-device-id': first.key },
      payload: { email: user.email, password: user.password },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-device-id']).toBe(first.key);
    const list = await devices(first.token);
    expect(list.find((d) => d.sessions.length === 2)).toBeDefined();
  });

  it('ignores a malformed device key and mints a fresh one', async () => {
    const user = await registerUser(t.app);
    const { key } = await login(user, { 'x-device-id': 'short' });
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('renames and trusts a device for auth.trusted_device_days; isDeviceTrusted answers for that key only', async () => {
    const user = await registerUser(t.app);
    const { token, key } = await login(user);
    const id = (await devices(token)).find((d) => d.current)?.id as string;
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/auth/devices/${id}`,
      headers: bearer(token),
      payload: { name: 'My phone', trusted: true },
    });
    expect(res.statusCode).toBe(200);
    const device = res.json().device;
    expect(device).toMatchObject({ id, name: 'My phone', trusted: true, current: true });
    const days = (Date.parse(device.trustedUntil) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(9.9);
    expect(days).toBeLessThanOrEqual(10);

    expect(await isDeviceTrusted(t.db, user.userId, { 'x-device-id': key })).toBe(true);
    // Outside the access plugin only the __Host- cookie counts: an unprefixed one may have been planted.
    const cookie = (name: string) => new Headers({ cookie: `a=b; ${name}=${key}` });
    expect(await isDeviceTrusted(t.db, user.userId, cookie('__Host-gateway_device'))).toBe(true);
    expect(await isDeviceTrusted(t.db, user.userId, cookie('gateway_device'))).toBe(false);
    expect(
      await isDeviceTrusted(t.db, user.userId, {
        'x-device-id': `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`,
      }),
    ).toBe(false);
    expect(await isDeviceTrusted(t.db, user.userId, {})).toBe(false);
    const stranger = await registerUser(t.app);
    expect(await isDeviceTrusted(t.db, stranger.userId, { 'x-device-id': key })).toBe(false);

    const untrust = await t.app.inject({
      method: 'PATCH',
      url: `/auth/devices/${id}`,
      headers: bearer(token),
      payload: { trusted: false },
    });
    expect(untrust.json().device).toMatchObject({ trusted: false, trustedUntil: null, name: 'My phone' });
    expect(await isDeviceTrusted(t.db, user.userId, { 'x-device-id': key })).toBe(false);
  });

  it('refuses an empty or unknown change with 400', async () => {
    const user = await registerUser(t.app);
    const { token } = await login(user);
    const id = (await devices(token)).find((d) => d.current)?.id as string;
    for (const payload of [{}, { name: '' }, { trusted: 'yes' }, { colour: 'red' }]) {
      const res = await t.app.inject({ method: 'PATCH', url: `/auth/devices/${id}`, headers: bearer(token), payload });
      expect(res.statusCode).toBe(400);
    }
  });

  it('answers 404 for another user’s device (rename, trust, remove)', async () => {
    const alice = await registerUser(t.app);
    const bob = await registerUser(t.app);
    const bobLogin = await login(bob);
    const bobDevice = (await devices(bobLogin.token)).find((d) => d.current)?.id as string;
    const aliceToken = (await login(alice)).token;
    const patch = await t.app.inject({
      method: 'PATCH',
      url: `/auth/devices/${bobDevice}`,
      headers: bearer(aliceToken),
      payload: { trusted: true },
    });
    expect(patch.statusCode).toBe(404);
    expect(patch.json().error.code).toBe('DEVICE_NOT_FOUND');
    const del = await t.app.inject({
      method: 'DELETE',
      url: `/auth/devices/${bobDevice}`,
      headers: bearer(aliceToken),
    });
    expect(del.statusCode).toBe(404);
    expect((await devices(bobLogin.token)).find((d) => d.id === bobDevice)?.trusted).toBe(false);
  });

  it('removing a device revokes its sessions and only those', async () => {
    const user = await registerUser(t.app);
    const phone = await login(user);
    const phone2 = await login(user, { 'x-device-id': phone.key });
    const laptop = await login(user);
    const id = (await devices(phone.token)).find((d) => d.current)?.id as string;
    const res = await t.app.inject({ method: 'DELETE', url: `/auth/devices/${id}`, headers: bearer(laptop.token) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: true, revoked: 2 });
    for (const token of [phone.token, phone2.token]) {
      expect((await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(token) })).statusCode).toBe(
        401,
      );
    }
    expect(
      (await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(laptop.token) })).statusCode,
    ).toBe(200);
    expect((await devices(laptop.token)).map((d) => d.id)).not.toContain(id);
  });
});

// Regression: the device cookie was a plain `gateway_device`, so a sibling subdomain (or a plain-http attacker) could
// plant a key of its choosing, have the victim's session filed under it, and later skip 2FA once the victim trusted it.
describe('devices over https: the __Host- cookie only', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { server: { base_url: 'https://auth.example.com' } } });
  });
  afterAll(() => t?.close());

  const login = (user: { email: string; password: string }, cookie: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { cookie },
      payload: { email: user.email, password: user.password },
    });

  it('ignores a planted gateway_device cookie and sets __Host-gateway_device (Secure, Path=/, no Domain)', async () => {
    const user = await registerUser(t.app);
    const planted = 'attackerChosenDeviceKey_0123456789abcdef';
    const res = await login(user, `gateway_device=${planted}`);
    expect(res.statusCode).toBe(200);
    const key = res.headers['x-device-id'] as string;
    expect(key).not.toBe(planted);
    const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
    const cookie = cookies.find((c) => /^(__Host-)?gateway_device=/.test(c)) ?? '';
    expect(cookie.split(';')[0]).toBe(`__Host-gateway_device=${key}`);
    expect(cookie).toMatch(/;\s*Secure/);
    expect(cookie).toMatch(/;\s*Path=\/(;|$)/);
    expect(cookie).toMatch(/;\s*HttpOnly/);
    expect(cookie).not.toMatch(/Domain=/i);

    // The gateway's own cookie still groups later sign-ins under its device (no new device is made).
    const count = async () =>
      (await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices WHERE user_id = $1', [user.userId]))
        .rows[0]?.n;
    const before = await count();
    const again = await login(user, `gateway_device=${planted}; __Host-gateway_device=${key}`);
    expect(again.headers['x-device-id']).toBe(key);
    expect(await count()).toBe(before);
  });
});
