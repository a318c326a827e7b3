import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: X-Device-Id was neither allowed nor exposed by CORS, so a browser front end on a trusted origin could
// neither read the device key a sign-in answers with nor send it back: its sessions never joined a device.
describe('X-Device-Id through CORS', () => {
  const APP = 'https://app.example';
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { server: { trusted_origins: [APP] } } });
  });
  afterAll(() => t?.close());

  const list = (value: unknown) =>
    String(value ?? '')
      .toLowerCase()
      .split(/\s*,\s*/);

  it('a preflight from a trusted origin may send it', async () => {
    const res = await t.app.inject({
      method: 'OPTIONS',
      url: '/auth/login',
      headers: {
        origin: APP,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,x-device-id',
      },
    });
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(list(res.headers['access-control-allow-headers'])).toContain('x-device-id');
  });

  it('a sign-in answered to a trusted origin exposes it, and sending it back files the session under that device', async () => {
    const user = await registerUser(t.app);
    const login = (headers: Record<string, string> = {}) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/login',
        headers: { origin: APP, 'content-type': 'application/json', ...headers },
        payload: { email: user.email, password: user.password },
      });
    const first = await login();
    expect(first.statusCode).toBe(200);
    const device = first.headers['x-device-id'];
    expect(typeof device).toBe('string');
    expect(list(first.headers['access-control-expose-headers'])).toContain('x-device-id');
    const second = await login({ 'x-device-id': device as string });
    expect(second.statusCode).toBe(200);
    expect(second.headers['x-device-id']).toBe(device);
    const { rows } = await t.db.query<{ device_id: string | null }>(
      'SELECT device_id FROM sessions WHERE id = ANY($1)',
      [[first.json().token, second.json().token].map((tok: string) => t.app.jwt.decode<{ sid: string }>(tok)?.sid)],
    );
    expect(rows).toHaveLength(2);
    expect(rows[0]?.device_id).toBeTruthy();
    expect(rows[0]?.device_id).toBe(rows[1]?.device_id);
  });
});
