import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const CHROME_MAC =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
const FIREFOX_WIN = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0';

describe('GET/DELETE /auth/sessions, POST /auth/sessions/revoke-others', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const login = async (email: string, password: string, ua = CHROME_MAC, remoteAddress = '127.0.0.1') => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': ua },
      remoteAddress,
      payload: { email, password },
    });
    expect(res.statusCode).toBe(200);
    return res.json().token as string;
  };
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const list = async (token: string) => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(token) });
    expect(res.statusCode).toBe(200);
    return res.json().sessions as Array<Record<string, unknown> & { id: string; current: boolean }>;
  };
  const sessionOk = async (token: string) =>
    (await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(token) })).statusCode;

  it('lists the caller’s sessions with device name, ip, channel, times and the current flag', async () => {
    const user = await registerUser(t.app);
    const mac = await login(user.email, user.password, CHROME_MAC, '203.0.113.7');
    await login(user.email, user.password, FIREFOX_WIN);
    const sessions = await list(mac);
    expect(sessions).toHaveLength(3); // register + two logins
    const current = sessions.filter((s) => s.current);
    expect(current).toHaveLength(1);
    expect(current[0]).toMatchObject({
      ip: '203.0.113.7',
      channel: 'rest',
      device: { name: 'Chrome 120 on macOS' },
    });
    expect(Date.parse(current[0]?.lastUsedAt as string)).not.toBeNaN();
    expect(sessions.map((s) => (s.device as { name: string }).name)).toContain('Firefox 121 on Windows');
    for (const s of sessions) {
      expect(Date.parse(s.createdAt as string)).not.toBeNaN();
      expect(Date.parse(s.expiresAt as string)).toBeGreaterThan(Date.now());
    }
  });

  it('records the last use at most once a minute per session (a write per request would double the load)', async () => {
    const user = await registerUser(t.app);
    const lastUsed = async () =>
      (await t.db.query<{ at: Date }>('SELECT last_used_at AS at FROM sessions WHERE user_id = $1', [user.userId]))
        .rows[0]?.at;
    await sessionOk(user.token);
    await t.app.sessions.flushUses(); // uses are written behind, about once a second
    const first = await lastUsed();
    expect(first).toBeTruthy();
    await sessionOk(user.token);
    await t.app.sessions.flushUses();
    expect(await lastUsed()).toEqual(first); // within the minute: not written again
    await t.db.query("UPDATE sessions SET last_used_at = now() - interval '2 minutes' WHERE user_id = $1", [
      user.userId,
    ]);
    const stale = await lastUsed();
    t.app.sessionCache.clear(); // the direct SQL write bypassed the cache (a real minute would have passed instead)
    await t.app.authenticator.authenticateToken(user.token, 'websocket', '192.0.2.1');
    await t.app.sessions.flushUses();
    const after = await lastUsed();
    expect(new Date(after as Date).getTime()).toBeGreaterThan(new Date(stale as Date).getTime());
    const sessions = await list(user.token);
    expect(sessions[0]?.channel).toBe('websocket');
  });

  it('requires a signed-in caller', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/sessions' });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('AUTH_REQUIRED');
  });

  it('revokes one session: its token stops at once and the session-ended event fires', async () => {
    const user = await registerUser(t.app);
    const other = await login(user.email, user.password);
    const otherId = (await list(other)).find((s) => s.current)?.id as string;
    const ended = new Promise<string>((resolve) => {
      const off = t.app.sessionEvents.onSessionEnded((e) => {
        if (e.sessionId !== otherId) return;
        off();
        resolve(e.sessionId);
      });
    });
    const res = await t.app.inject({ method: 'DELETE', url: `/auth/sessions/${otherId}`, headers: bearer(user.token) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: true, revoked: 1 });
    expect(await ended).toBe(otherId);
    expect(await sessionOk(other)).toBe(401);
    expect(await sessionOk(user.token)).toBe(200);
    const { rows } = await t.db.query("SELECT details FROM auth_audit_log WHERE event = 'session.revoked'");
    expect(rows.map((r) => (r as { details: { revoked: string } }).details.revoked)).toContain(otherId);
  });

  it('answers 404 for another user’s session, and leaves it alone', async () => {
    const alice = await registerUser(t.app);
    const bob = await registerUser(t.app);
    const bobSession = (await list(bob.token))[0]?.id as string;
    const res = await t.app.inject({
      method: 'DELETE',
      url: `/auth/sessions/${bobSession}`,
      headers: bearer(alice.token),
    });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('SESSION_NOT_FOUND');
    expect(await sessionOk(bob.token)).toBe(200);
    // The same answer as for a session that never existed: nothing tells the two apart.
    const none = await t.app.inject({
      method: 'DELETE',
      url: '/auth/sessions/sess_0_nope',
      headers: bearer(alice.token),
    });
    expect(none.statusCode).toBe(404);
    expect(none.json()).toEqual(res.json());
  });

  it('refuses a malformed session id with 400', async () => {
    const user = await registerUser(t.app);
    for (const id of ['a%20b', '%27%3B--', 'sess%2F..%2F1']) {
      const res = await t.app.inject({ method: 'DELETE', url: `/auth/sessions/${id}`, headers: bearer(user.token) });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
    // Past Fastify's parameter length limit (100) the router itself answers 414 URI Too Long.
    const long = await t.app.inject({
      method: 'DELETE',
      url: `/auth/sessions/${'x'.repeat(500)}`,
      headers: bearer(user.token),
    });
    expect(long.statusCode).toBe(414);
  });

  it('revoke-others keeps only the current session', async () => {
    const user = await registerUser(t.app);
    const a = await login(user.email, user.password);
    const b = await login(user.email, user.password);
    const stranger = await registerUser(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/auth/sessions/revoke-others', headers: bearer(b) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: true, revoked: 2 });
    expect(await sessionOk(b)).toBe(200);
    expect(await sessionOk(a)).toBe(401);
    expect(await sessionOk(user.token)).toBe(401);
    expect(await sessionOk(stranger.token)).toBe(200);
    expect((await list(b)).map((s) => s.current)).toEqual([true]);
  });
});

describe('GET /auth/sessions with auth.session.idle_timeout', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { session: { idle_timeout: 1800 } } } });
  });
  afterAll(() => t?.close());

  it('does not list a session the gateway refuses as idle', async () => {
    const user = await registerUser(t.app);
    const other = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    const idleToken = other.json().token as string;
    const { sid } = JSON.parse(Buffer.from(idleToken.split('.')[1] ?? '', 'base64url').toString()) as { sid: string };
    // Unused for two hours, far from its expiry; never read by this process, so not cached here.
    await t.db.query(`UPDATE sessions SET last_used_at = now() - interval '2 hours' WHERE id = $1`, [sid]);
    const refused = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${idleToken}` } });
    expect(refused.statusCode).toBe(401);
    const listed = await t.app.inject({ url: '/auth/sessions', headers: { authorization: `Bearer ${user.token}` } });
    expect((listed.json().sessions as Array<{ id: string }>).map((s) => s.id)).not.toContain(sid);
    expect(listed.json().sessions).toHaveLength(1);
  });
});
