import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { betterAuthCookie, createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

/** Better Auth's POST /api/auth/sign-out ends a session as POST /auth/logout does, and is audited alike. */
describe('sign-out through Better Auth', () => {
  let t: TestApp;
  let origin: string;
  beforeAll(async () => {
    t = await createTestApp();
    origin = t.config.server.base_url;
  });
  afterAll(() => t?.close());

  const signOut = (headers: Record<string, string>) =>
    t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-out',
      headers: { origin, 'content-type': 'application/json', ...headers },
      payload: '{}',
    });
  const logouts = async (userId: string) =>
    (
      await t.db.query<{ session_id: string | null; channel: string; ip_address: string; user_agent: string | null }>(
        `SELECT session_id, channel, ip_address, user_agent FROM auth_audit_log
          WHERE event = 'logout' AND user_id = $1`,
        [userId],
      )
    ).rows;
  const sessionIds = async (userId: string) =>
    (await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [userId])).rows.map((r) => r.id);
  /** Signs `user` in through Better Auth: the Cookie header its answer sets. */
  const cookieOf = (user: { email: string; password: string }) => betterAuthCookie(t.app, user, origin);

  it('with the session cookie: the session ends and a logout row names it', async () => {
    const user = await registerUser(t.app);
    const cookie = await cookieOf(user);
    expect(cookie).toMatch(/better-auth\.session_token=/);
    const before = await sessionIds(user.userId);
    expect(before).toHaveLength(2); // registration's and this sign-in's

    const out = await signOut({ cookie, 'user-agent': 'sign-out-test/1' });
    expect(out.statusCode).toBe(200);
    const after = await sessionIds(user.userId);
    const ended = before.filter((id) => !after.includes(id));
    expect(ended).toHaveLength(1);
    expect(await logouts(user.userId)).toEqual([
      { session_id: ended[0], channel: 'rest', ip_address: '127.0.0.1', user_agent: 'sign-out-test/1' },
    ]);
  });

  it('with our bearer token: that session ends and is recorded', async () => {
    const user = await registerUser(t.app);
    const [sessionId] = await sessionIds(user.userId);
    const out = await signOut({ authorization: `Bearer ${user.token}` });
    expect(out.statusCode).toBe(200);
    expect(await sessionIds(user.userId)).toEqual([]);
    expect((await logouts(user.userId)).map((r) => r.session_id)).toEqual([sessionId]);
  });

  it("with our bearer and another user's cookie: the bearer's session is the one ended and recorded", async () => {
    const a = await registerUser(t.app);
    const b = await registerUser(t.app);
    const cookie = await cookieOf(b);
    const [aSession] = await sessionIds(a.userId);
    const bSessions = await sessionIds(b.userId);
    const out = await signOut({ authorization: `Bearer ${a.token}`, cookie });
    expect(out.statusCode).toBe(200);
    expect(await sessionIds(a.userId)).toEqual([]);
    expect((await sessionIds(b.userId)).sort()).toEqual([...bSessions].sort());
    expect((await logouts(a.userId)).map((r) => r.session_id)).toEqual([aSession]);
    expect(await logouts(b.userId)).toEqual([]);
  });

  it('without a live session: nothing ends and nothing is recorded', async () => {
    const user = await registerUser(t.app);
    expect((await signOut({ authorization: `Bearer ${user.token}` })).statusCode).toBe(200);
    const mark = Number(
      (await t.db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM auth_audit_log')).rows[0]?.id,
    );
    // The same token again (its session is gone), a forged cookie, and no credential at all.
    const again = await signOut({ authorization: `Bearer ${user.token}` });
    expect(again.statusCode).toBe(401);
    expect(again.json().error.code).toBe('INVALID_TOKEN');
    // Better Auth's sign-out is idempotent: with no session it clears the cookies and answers success.
    for (const headers of [{ cookie: 'better-auth.session_token=forged.value' }, {}] as Record<string, string>[]) {
      const res = await signOut(headers);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ success: true });
    }
    const { rows } = await t.db.query(`SELECT event FROM auth_audit_log WHERE id > $1 AND event = 'logout'`, [mark]);
    expect(rows).toEqual([]);
  });

  it("ends the session even when Better Auth's own delete failed (it answers success regardless)", async () => {
    const user = await registerUser(t.app);
    const [sessionId] = await sessionIds(user.userId);
    // The first DELETE of this session fails (Better Auth's, which it logs and ignores); a sequence, unlike a table,
    // is not rolled back with the failed statement.
    await t.db.query('CREATE SEQUENCE IF NOT EXISTS sign_out_fail_once');
    await t.db.query(`CREATE OR REPLACE FUNCTION sign_out_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF OLD.id = '${sessionId}' AND nextval('sign_out_fail_once') = 1 THEN RAISE EXCEPTION 'injected failure'; END IF;
        RETURN OLD;
      END $$`);
    await t.db.query(
      'CREATE TRIGGER sign_out_fail_once BEFORE DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION sign_out_fail_once()',
    );
    try {
      const out = await signOut({ authorization: `Bearer ${user.token}` });
      expect(out.statusCode).toBe(200);
      expect(await sessionIds(user.userId)).toEqual([]);
      expect((await logouts(user.userId)).map((r) => r.session_id)).toEqual([sessionId]);
      const res = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${user.token}` } });
      expect(res.statusCode).toBe(401);
    } finally {
      await t.db.query('DROP TRIGGER sign_out_fail_once ON sessions');
    }
  });
});

// Regression: a sign-out with the cookie of a session the gateway refuses (idle, its user disabled) answered success,
// but the cookie never reached Better Auth (stripped as no session), so the session row stayed and no logout was recorded.
describe('sign-out through Better Auth of a session the gateway refuses', () => {
  let t: TestApp;
  let origin: string;
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { session: { idle_timeout: 3600 }, session_cache: { ttl: 0 } } } });
    origin = t.config.server.base_url;
  });
  afterAll(() => t?.close());

  /** A Better Auth cookie session of a new user: its Cookie header and session id. */
  const cookieSession = async () => {
    const user = await registerUser(t.app);
    const cookie = await betterAuthCookie(t.app, user, origin);
    const { rows } = await t.db.query<{ id: string }>(
      'SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1',
      [user.userId],
    );
    return { user, cookie, sessionId: rows[0]?.id as string };
  };

  const expectSignedOut = async (user: { userId: string }, cookie: string, sessionId: string) => {
    const out = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-out',
      headers: { origin, cookie, 'content-type': 'application/json' },
      payload: '{}',
    });
    expect(out.statusCode).toBe(200);
    expect(out.json()).toEqual({ success: true });
    // Better Auth's sign-out clears its cookies, as for any other session.
    const cleared = ([] as string[]).concat(out.headers['set-cookie'] ?? []);
    expect(cleared.some((c) => /^better-auth\.session_token=;.*Max-Age=0/i.test(c))).toBe(true);
    expect((await t.db.query('SELECT 1 FROM sessions WHERE id = $1', [sessionId])).rows).toEqual([]);
    const { rows } = await t.db.query<{ session_id: string }>(
      `SELECT session_id FROM auth_audit_log WHERE event = 'logout' AND user_id = $1`,
      [user.userId],
    );
    expect(rows.map((r) => r.session_id)).toEqual([sessionId]);
  };

  it('an idle session: ended and recorded', async () => {
    const { user, cookie, sessionId } = await cookieSession();
    await t.app.sessions.flushUses();
    await t.db.query(`UPDATE sessions SET last_used_at = now() - interval '2 hours' WHERE id = $1`, [sessionId]);
    await expectSignedOut(user, cookie, sessionId);
  });

  it("a disabled user's session: ended and recorded", async () => {
    const { user, cookie, sessionId } = await cookieSession();
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
    await expectSignedOut(user, cookie, sessionId);
  });
});
