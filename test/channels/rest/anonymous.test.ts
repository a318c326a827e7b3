import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSiblingApp } from '../../helpers/sibling-app.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

describe('anonymous sign-in', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const anonymous = async () => {
    const res = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    expect(res.statusCode).toBe(201);
    return res.json() as { success: true; userId: string; token: string };
  };
  const session = (token: string) =>
    t.app.inject({ method: 'GET', url: '/auth/session', headers: { authorization: `Bearer ${token}` } });

  it('POST /auth/anonymous: a fresh anonymous user with the free license and a working token', async () => {
    const a = await anonymous();
    const b = await anonymous();
    expect(a.userId).not.toBe(b.userId);
    const res = await session(a.token);
    expect(res.statusCode).toBe(200);
    expect(res.json().user.id).toBe(a.userId);
    expect(res.json().license.type).toBe('free');
    const { rows } = await t.db.query<{ is_anonymous: boolean; email: string }>(
      'SELECT is_anonymous, email FROM users WHERE id = $1',
      [a.userId],
    );
    expect(rows[0]?.is_anonymous).toBe(true);
    expect(rows[0]?.email).toMatch(/@anonymous\.invalid$/);
  });

  it('registering with the anonymous token keeps the same user id, links and session', async () => {
    const a = await anonymous();
    await t.db.query(
      `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '4242')`,
      [a.userId],
    );
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${a.token}` },
      payload: { email: 'Upgraded@Example.com', password: 'SecurePassword123!', name: 'Up Graded' },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json().userId).toBe(a.userId);
    const me = await session(res.json().token);
    expect(me.json().user).toEqual({ id: a.userId, email: 'upgraded@example.com', name: 'Up Graded' });
    // The old token still names the same, still active session.
    expect((await session(a.token)).statusCode).toBe(200);
    const { rows } = await t.db.query<{ is_anonymous: boolean }>('SELECT is_anonymous FROM users WHERE id = $1', [
      a.userId,
    ]);
    expect(rows[0]?.is_anonymous).toBe(false);
    const links = await t.db.query('SELECT 1 FROM user_channel_links WHERE user_id = $1', [a.userId]);
    expect(links.rows).toHaveLength(1);
    // And the password works for a normal login.
    const login = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: 'upgraded@example.com', password: 'SecurePassword123!' },
    });
    expect(login.statusCode).toBe(200);
    expect(login.json().userId).toBe(a.userId);
  });

  it('refuses: a registered user token (NOT_ANONYMOUS), a bad token, a taken email, a second upgrade', async () => {
    const user = await registerUser(t.app);
    const payload = { email: 'another@example.com', password: 'SecurePassword123!' };
    const asUser = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${user.token}` },
      payload,
    });
    expect(asUser.statusCode).toBe(409);
    expect(asUser.json().error.code).toBe('NOT_ANONYMOUS');

    const bad = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: 'Bearer not-a-token' },
      payload,
    });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().error.code).toBe('INVALID_TOKEN');

    const a = await anonymous();
    const taken = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${a.token}` },
      payload: { email: user.email, password: 'SecurePassword123!' },
    });
    expect(taken.statusCode).toBe(409);
    expect(taken.json().error.code).toBe('EMAIL_TAKEN');
    const still = await t.db.query<{ is_anonymous: boolean }>('SELECT is_anonymous FROM users WHERE id = $1', [
      a.userId,
    ]);
    expect(still.rows[0]?.is_anonymous).toBe(true);

    const ok = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${a.token}` },
      payload: { email: 'third@example.com', password: 'SecurePassword123!' },
    });
    expect(ok.statusCode).toBe(201);
    const again = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${a.token}` },
      payload: { email: 'fourth@example.com', password: 'SecurePassword123!' },
    });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('NOT_ANONYMOUS');
  });

  it('concurrent upgrades of one anonymous user: exactly one succeeds', async () => {
    const a = await anonymous();
    const results = await Promise.all(
      ['c1@example.com', 'c2@example.com', 'c3@example.com'].map((email) =>
        t.app.inject({
          method: 'POST',
          url: '/auth/register',
          headers: { authorization: `Bearer ${a.token}` },
          payload: { email, password: 'SecurePassword123!' },
        }),
      ),
    );
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
    const creds = await t.db.query("SELECT 1 FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential'", [
      a.userId,
    ]);
    expect(creds.rows).toHaveLength(1);
  });

  it('cleanup deletes anonymous users older than anonymous.max_age, with their sessions; keeps the rest', async () => {
    const old = await anonymous();
    const young = await anonymous();
    const registered = await registerUser(t.app);
    await t.db.query(`UPDATE users SET created_at = now() - interval '31 days' WHERE id = ANY($1)`, [
      [old.userId, registered.userId],
    ]);
    const result = await t.app.runSignInCleanup();
    expect(result.anonymousUsers).toBeGreaterThanOrEqual(1);
    expect((await session(old.token)).statusCode).toBe(401);
    expect((await session(young.token)).statusCode).toBe(200);
    expect((await session(registered.token)).statusCode).toBe(200);
    const gone = await t.db.query('SELECT 1 FROM users WHERE id = $1', [old.userId]);
    expect(gone.rows).toHaveLength(0);
  });

  describe('disabled (anonymous.enabled and magic_link.enabled false)', () => {
    let off: Awaited<ReturnType<typeof createSiblingApp>>;
    beforeAll(async () => {
      off = await createSiblingApp(t, { anonymous: { enabled: false }, magic_link: { enabled: false } });
    });
    afterAll(() => off?.close());

    it('answers 404 FEATURE_DISABLED', async () => {
      const res = await off.inject({ method: 'POST', url: '/auth/anonymous' });
      expect(res.statusCode).toBe(404);
      expect(res.json().error.code).toBe('FEATURE_DISABLED');
      // Better Auth's own route is gone too.
      const direct = await off.inject({ method: 'POST', url: '/api/auth/sign-in/anonymous' });
      expect(direct.statusCode).toBe(404);
      const link = await off.inject({ method: 'POST', url: '/auth/magic-link', payload: { email: 'a@example.com' } });
      expect(link.statusCode).toBe(404);
      expect(link.json().error.code).toBe('FEATURE_DISABLED');
      const verify = await off.inject({ method: 'GET', url: `/auth/magic-link/verify?token=${'A'.repeat(43)}` });
      expect(verify.json().error.code).toBe('FEATURE_DISABLED');
    });
  });
});
