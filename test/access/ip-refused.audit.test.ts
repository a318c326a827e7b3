import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: every refusal wrote an ip.refused row, and GET /auth/session is exempt from the rate limits, so a token
// used from a refused address (or any request to a sign-in path from a denied one) wrote a row per request.
describe('ip.refused on session checks: every refusal is a 403, one row per user, client and reason a window', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: { rate_limit: { enabled: true }, ip_restrictions: { allow: [], deny: ['203.0.113.0/24'] } },
    });
  });
  afterAll(() => t?.close());

  const refusals = async (userId: string) => {
    const { rows } = await t.db.query<{ ip_address: string; channel: string; details: { reason: string } }>(
      `SELECT ip_address, channel, details FROM auth_audit_log WHERE event = 'ip.refused' AND user_id = $1 ORDER BY id`,
      [userId],
    );
    return rows;
  };

  it("a valid token's session checks from outside its allow list: 200 refusals, one row per address", async () => {
    const user = await registerUser(t.app);
    const set = await t.app.inject({
      method: 'PUT',
      url: '/auth/ip-allowlist',
      headers: { authorization: `Bearer ${user.token}` },
      payload: { cidrs: ['127.0.0.1/32'] },
    });
    expect(set.statusCode).toBe(200);
    const check = (remoteAddress: string) =>
      t.app.inject({
        method: 'GET',
        url: '/auth/session',
        remoteAddress,
        headers: { authorization: `Bearer ${user.token}` },
      });
    for (let i = 0; i < 200; i++) {
      const res = await check('192.0.2.9');
      expect([res.statusCode, res.json().error?.code]).toEqual([403, 'IP_NOT_ALLOWED']);
    }
    expect((await check('192.0.2.10')).statusCode).toBe(403);
    // A globally denied address is another reason: its first refusal is written too.
    expect((await check('203.0.113.9')).statusCode).toBe(403);
    const rows = await refusals(user.userId);
    expect(rows.map((r) => [r.ip_address, r.channel, r.details.reason])).toEqual([
      ['192.0.2.9', 'rest', 'user_allow'],
      ['192.0.2.10', 'rest', 'user_allow'],
      ['203.0.113.9', 'rest', 'global_deny'],
    ]);
  });
});

describe('ip.refused on sign-in paths from a globally denied address, with no rate limit to stop a loop', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { ip_restrictions: { allow: [], deny: ['203.0.113.0/24'] } } });
  });
  afterAll(() => t?.close());

  it('each request refused, one row per address and reason', async () => {
    for (const ip of ['203.0.113.77', '203.0.113.78']) {
      for (let i = 0; i < 50; i++) {
        for (const url of ['/auth/login', '/api/auth/sign-in/email', '/auth/anonymous']) {
          const res = await t.app.inject({
            method: 'POST',
            url,
            remoteAddress: ip,
            payload: { email: 'someone@example.com', password: 'SecurePassword123!' },
          });
          expect([res.statusCode, res.json().error?.code], url).toEqual([403, 'IP_NOT_ALLOWED']);
        }
      }
    }
    const { rows } = await t.db.query<{ ip_address: string; details: object }>(
      `SELECT ip_address, details FROM auth_audit_log WHERE event = 'ip.refused' ORDER BY id`,
    );
    expect(rows.map((r) => [r.ip_address, r.details])).toEqual([
      ['203.0.113.77', { reason: 'global_deny', at: 'sign-in', path: '/auth/login' }],
      ['203.0.113.78', { reason: 'global_deny', at: 'sign-in', path: '/auth/login' }],
    ]);
  });
});
