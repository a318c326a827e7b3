import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression (review G). README (IP restrictions): "Every refused request is answered 403, but the ip.refused row is written once a minute per
// user (or session), client address ... and reason, and on sign-in routes once a minute per client address and
// reason, in each process: a loop from a refused address ... cannot turn into a write flood."
// A sign-in refused by the user's own allow list (the sign-in guard, reason user_allow) still writes a row per attempt.
describe('ip.refused of sign-ins refused by the user allow list', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { rate_limit: { enabled: false } } });
  });
  afterAll(() => t?.close());

  it('a loop of sign-ins from outside the allow list writes one row per address and reason a minute', async () => {
    const user = await registerUser(t.app);
    const set = await t.app.inject({
      method: 'PUT',
      url: '/auth/ip-allowlist',
      headers: { authorization: `Bearer ${user.token}` },
      payload: { cidrs: ['127.0.0.1/32'] },
    });
    expect(set.statusCode).toBe(200);
    for (let i = 0; i < 30; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/login',
        remoteAddress: '192.0.2.9',
        payload: { email: user.email, password: user.password },
      });
      expect([res.statusCode, res.json().error?.code]).toEqual([403, 'IP_NOT_ALLOWED']);
    }
    const { rows } = await t.db.query<{ n: string | number }>(
      `SELECT count(*) AS n FROM auth_audit_log WHERE event = 'ip.refused' AND user_id = $1`,
      [user.userId],
    );
    expect(Number(rows[0]?.n)).toBe(1);
  });
});
