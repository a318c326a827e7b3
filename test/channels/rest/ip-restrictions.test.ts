import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../src/errors/index.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const DENIED_V4 = '203.0.113.9';
const DENIED_V6 = '2001:db8:bad::1';

describe('IP restrictions: global lists and per-user allow lists, on REST, sign-in and the Authenticator', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: { ip_restrictions: { allow: [], deny: ['203.0.113.0/24', '2001:db8:bad::/48'] } },
    });
  });
  afterAll(() => t?.close());

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const login = (user: { email: string; password: string }, remoteAddress: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/login',
      remoteAddress,
      payload: { email: user.email, password: user.password },
    });
  const betterAuthLogin = (user: { email: string; password: string }, remoteAddress: string) =>
    t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      remoteAddress,
      headers: { origin: 'http://localhost:3000' },
      payload: { email: user.email, password: user.password },
    });
  const refusals = async (userId: string | null) => {
    const { rows } = await t.db.query<{ channel: string; ip_address: string; details: { reason: string } }>(
      `SELECT channel, ip_address, details FROM auth_audit_log
        WHERE event = 'ip.refused' AND ($1::text IS NULL OR user_id = $1) ORDER BY id`,
      [userId],
    );
    return rows;
  };

  it('refuses sign-in from a denied address (IPv4 and IPv6) before checking the password', async () => {
    const user = await registerUser(t.app);
    for (const ip of [DENIED_V4, DENIED_V6]) {
      const right = await login(user, ip);
      expect(right.statusCode).toBe(403);
      expect(right.json().error.code).toBe('IP_NOT_ALLOWED');
      const wrong = await login({ ...user, password: 'wrong-password!' }, ip);
      expect(wrong.statusCode).toBe(403); // no password oracle for refused addresses
    }
    expect((await login(user, '198.51.100.1')).statusCode).toBe(200);
    const rows = await refusals(null);
    expect(rows.map((r) => r.ip_address)).toEqual(expect.arrayContaining([DENIED_V4, DENIED_V6]));
    expect(rows[0]?.details.reason).toBe('global_deny');
  });

  it('refuses registration and Better Auth’s own sign-in routes from a denied address', async () => {
    const reg = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      remoteAddress: DENIED_V4,
      payload: { email: 'denied@example.com', password: 'SecurePassword123!' },
    });
    expect(reg.statusCode).toBe(403);
    const { rows } = await t.db.query("SELECT 1 FROM users WHERE email = 'denied@example.com'");
    expect(rows).toHaveLength(0);
    const user = await registerUser(t.app);
    const ba = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      remoteAddress: DENIED_V6,
      headers: { 'content-type': 'application/json' },
      payload: { email: user.email, password: user.password },
    });
    expect(ba.statusCode).toBe(403);
    expect(ba.json().error.code).toBe('IP_NOT_ALLOWED');
  });

  it('refuses a valid token used from a denied address on REST (403, audited), and accepts it elsewhere', async () => {
    const user = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      remoteAddress: DENIED_V4,
      headers: bearer(user.token),
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('IP_NOT_ALLOWED');
    const ok = await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(user.token) });
    expect(ok.statusCode).toBe(200);
    expect((await refusals(user.userId)).map((r) => r.channel)).toEqual(['rest']);
  });

  it('the Authenticator refuses WebSocket upgrades and first-message tokens by ip (channel websocket)', async () => {
    const user = await registerUser(t.app);
    const { authenticator } = t.app;
    await expect(
      authenticator.authenticateWebSocket({ headers: bearer(user.token), ip: DENIED_V6 }),
    ).rejects.toMatchObject({ code: 'IP_NOT_ALLOWED', status: 403 });
    await expect(authenticator.authenticateToken(user.token, 'websocket', DENIED_V4)).rejects.toBeInstanceOf(AppError);
    expect((await authenticator.authenticateWebSocket({ headers: bearer(user.token), ip: '192.0.2.1' }))?.userId).toBe(
      user.userId,
    );
    // Without an address (an in-process caller) the lists cannot apply; every channel passes one.
    expect((await authenticator.authenticateToken(user.token, 'websocket'))?.userId).toBe(user.userId);
    // An invalid token from a denied address is simply invalid (null), never a 403 that confirms anything.
    expect(await authenticator.authenticateToken('not-a-token', 'websocket', DENIED_V4)).toBeNull();
    const rows = await refusals(user.userId);
    expect(rows.map((r) => [r.channel, r.ip_address])).toEqual([
      ['websocket', DENIED_V6],
      ['websocket', DENIED_V4],
    ]);
  });

  describe('per-user allow list (PUT /auth/ip-allowlist)', () => {
    const OFFICE = '198.51.100.0/24';
    const AT_OFFICE = '198.51.100.20';
    const AT_HOME = '192.0.2.44';

    const putAllowlist = (token: string, from: string, cidrs: string[]) =>
      t.app.inject({
        method: 'PUT',
        url: '/auth/ip-allowlist',
        remoteAddress: from,
        headers: bearer(token),
        payload: { cidrs },
      });

    it('is set by the user from inside it, and then enforced on REST, sign-in and the Authenticator', async () => {
      const user = await registerUser(t.app);
      const lockout = await putAllowlist(user.token, AT_HOME, [OFFICE]);
      expect(lockout.statusCode).toBe(409);
      expect(lockout.json().error.code).toBe('IP_ALLOWLIST_LOCKOUT');

      const set = await putAllowlist(user.token, AT_OFFICE, [OFFICE, '2001:db8:1::/48']);
      expect(set.statusCode).toBe(200);
      expect(set.json()).toEqual({ success: true, cidrs: [OFFICE, '2001:db8:1::/48'] });

      const get = await t.app.inject({
        method: 'GET',
        url: '/auth/ip-allowlist',
        remoteAddress: '2001:db8:1::5',
        headers: bearer(user.token),
      });
      expect(get.json().cidrs).toEqual([OFFICE, '2001:db8:1::/48']);

      const home = await t.app.inject({
        method: 'GET',
        url: '/auth/session',
        remoteAddress: AT_HOME,
        headers: bearer(user.token),
      });
      expect(home.statusCode).toBe(403);
      expect(home.json().error.code).toBe('IP_NOT_ALLOWED');

      const loginHome = await login(user, AT_HOME);
      expect(loginHome.statusCode).toBe(403);
      expect(loginHome.json().error.code).toBe('IP_NOT_ALLOWED');
      expect((await login(user, AT_OFFICE)).statusCode).toBe(200);

      await expect(
        t.app.authenticator.authenticateWebSocket({ headers: bearer(user.token), ip: AT_HOME }),
      ).rejects.toMatchObject({ code: 'IP_NOT_ALLOWED' });
      expect((await t.app.authenticator.authenticateToken(user.token, 'websocket', AT_OFFICE))?.userId).toBe(
        user.userId,
      );
      const reasons = (await refusals(user.userId)).map((r) => r.details.reason);
      expect(reasons).toContain('user_allow');

      // Clearing it lifts the restriction.
      const clear = await putAllowlist(user.token, AT_OFFICE, []);
      expect(clear.statusCode).toBe(200);
      expect((await login(user, AT_HOME)).statusCode).toBe(200);
    });

    it("is enforced on Better Auth's routes too: our JWT, its cookie and its own bearer token", async () => {
      const user = await registerUser(t.app);
      expect((await putAllowlist(user.token, AT_OFFICE, [OFFICE])).statusCode).toBe(200);
      const signIn = await t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        remoteAddress: AT_OFFICE,
        headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
        payload: JSON.stringify({ email: user.email, password: user.password }),
      });
      expect(signIn.statusCode).toBe(200);
      const cookie = ([] as string[])
        .concat(signIn.headers['set-cookie'] ?? [])
        .map((c) => c.split(';')[0] as string)
        .filter((c) => c.startsWith('better-auth.'))
        .join('; ');
      expect(cookie).toContain('better-auth.session_token=');
      const raw = signIn.json().token as string; // Better Auth's raw session token, from its sign-in body
      const credentials: Array<Record<string, string>> = [
        bearer(user.token),
        { cookie },
        bearer(raw),
        // Spellings Better Auth's bearer parsing accepts (it trims): no credential may skip the check.
        { authorization: `Bearer ${raw}\u00a0` },
        { authorization: `bearer  ${raw} ` },
        { cookie: ` ${cookie.replaceAll('=', ' =')}` },
      ];
      for (const headers of credentials) {
        const getSession = (remoteAddress: string) =>
          t.app.inject({ method: 'GET', url: '/api/auth/get-session', remoteAddress, headers });
        const home = await getSession(AT_HOME);
        expect(home.statusCode).toBe(403);
        expect(home.json().error.code).toBe('IP_NOT_ALLOWED');
        const office = await getSession(AT_OFFICE);
        expect(office.statusCode).toBe(200);
        expect(office.json()).toMatchObject({ user: { id: user.userId } });
      }
    });

    it('a use refused for the address is not recorded as a use of the session', async () => {
      const user = await registerUser(t.app);
      const set = await putAllowlist(user.token, AT_OFFICE, [OFFICE]);
      expect(set.statusCode).toBe(200);
      // A new session, first used from outside the list: refused, and its first use is still unrecorded.
      const fresh = await login(user, AT_OFFICE);
      const token = fresh.json().token as string;
      const home = await t.app.inject({ url: '/auth/session', remoteAddress: AT_HOME, headers: bearer(token) });
      expect(home.statusCode).toBe(403);
      const lastChannel = async () => {
        await t.app.sessions.flushUses();
        return (
          await t.db.query<{ last_channel: string | null }>(
            'SELECT last_channel FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1',
            [user.userId],
          )
        ).rows[0]?.last_channel;
      };
      expect(await lastChannel()).toBeNull();
      const office = await t.app.inject({ url: '/auth/session', remoteAddress: AT_OFFICE, headers: bearer(token) });
      expect(office.statusCode).toBe(200);
      expect(await lastChannel()).toBe('rest');
    });

    // Regression: behind a proxy that writes the client with a port ("198.51.100.20:51234", "[2001:db8::1]:443"),
    // request.ip went to Better Auth as it was; its getIP cannot read that, so the sign-in guard saw no address (in
    // production: no allow list applied) and the session recorded none.
    it('judges and records a sign-in whose address carries a proxy port by the address alone', async () => {
      const user = await registerUser(t.app);
      expect((await putAllowlist(user.token, AT_OFFICE, [OFFICE, '2001:db8:1::/48'])).statusCode).toBe(200);
      const lastIp = async () =>
        (
          await t.db.query<{ ip_address: string }>(
            'SELECT ip_address FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1',
            [user.userId],
          )
        ).rows[0]?.ip_address;
      for (const [from, ip] of [
        [`${AT_OFFICE}:51234`, AT_OFFICE],
        ['[2001:db8:1::5]:443', '2001:0db8:0001:0000:0000:0000:0000:0005'], // as Better Auth writes any IPv6 address
      ] as const) {
        expect((await login(user, from)).statusCode, from).toBe(200);
        expect(await lastIp(), from).toBe(ip);
        expect((await betterAuthLogin(user, from)).statusCode, from).toBe(200);
        expect(await lastIp(), from).toBe(ip);
      }
      for (const from of [`${AT_HOME}:51234`, '[2001:db8:2::5]:443']) {
        const home = await login(user, from);
        expect(home.statusCode, from).toBe(403);
        expect(home.json().error.code).toBe('IP_NOT_ALLOWED');
        expect((await betterAuthLogin(user, from)).statusCode, from).toBe(403);
      }
    });

    // Regression: passkey and Telegram widget sign-ins (engine.createSession) and every audit row stored request.ip as
    // the proxy wrote it, port included, so the sessions list and the audit log showed "198.51.100.20:51234".
    it('records the address without a proxy port in sessions made by the engine and in audit rows', async () => {
      const user = await registerUser(t.app);
      const { sessionId } = await t.app.engine.createSession(user.userId, {
        ip: `${AT_OFFICE}:51234`,
        userAgent: null,
      });
      const { rows } = await t.db.query<{ ip_address: string }>('SELECT ip_address FROM sessions WHERE id = $1', [
        sessionId,
      ]);
      expect(rows[0]?.ip_address).toBe(AT_OFFICE);
      await t.app.audit.record({
        event: 'login.success',
        userId: user.userId,
        channel: 'rest',
        ip: '[2001:db8::5]:443',
      });
      const audit = await t.db.query<{ ip_address: string }>(
        `SELECT ip_address FROM auth_audit_log WHERE user_id = $1 AND event = 'login.success' ORDER BY id DESC LIMIT 1`,
        [user.userId],
      );
      expect(audit.rows[0]?.ip_address).toBe('2001:db8::5');
    });

    // Regression: a session created without an address the auth engine could read skipped the user's allow list.
    it('refuses a sign-in with no readable address when the user has an allow list, audited', async () => {
      const user = await registerUser(t.app);
      expect((await putAllowlist(user.token, AT_OFFICE, [OFFICE])).statusCode).toBe(200);
      await expect(t.app.engine.createSession(user.userId, { ip: '', userAgent: null })).rejects.toMatchObject({
        code: 'IP_NOT_ALLOWED',
      });
      expect((await refusals(user.userId)).map((r) => [r.ip_address, r.details.reason])).toEqual([
        [null, 'unparseable'],
      ]);
      // Without an allow list there is nothing to refuse it for.
      const other = await registerUser(t.app);
      expect((await t.app.engine.createSession(other.userId, { ip: '', userAgent: null })).userId).toBe(other.userId);
    });

    it('refuses entries that are not CIDRs or addresses, and oversized lists', async () => {
      const user = await registerUser(t.app);
      for (const cidrs of [['10.0.0.0/33'], ['example.com'], [''], Array.from({ length: 101 }, () => '10.0.0.1')]) {
        const res = await t.app.inject({
          method: 'PUT',
          url: '/auth/ip-allowlist',
          headers: bearer(user.token),
          payload: { cidrs },
        });
        expect(res.statusCode).toBe(400);
        expect(res.json().error.code).toBe('VALIDATION_FAILED');
      }
    });

    it('judges an IPv6 sign-in by its whole address, not by its /64 network', async () => {
      const HOME = '2001:db8:0:1::5';
      const NEIGHBOUR = '2001:db8:0:1::dead:beef'; // the same /64
      const user = await registerUser(t.app);
      expect((await putAllowlist(user.token, HOME, [HOME])).statusCode).toBe(200);
      expect((await login(user, HOME)).statusCode).toBe(200);
      expect((await betterAuthLogin(user, HOME)).statusCode).toBe(200);
      const neighbour = await login(user, NEIGHBOUR);
      expect(neighbour.statusCode).toBe(403);
      expect(neighbour.json().error.code).toBe('IP_NOT_ALLOWED');
      const neighbourApi = await betterAuthLogin(user, NEIGHBOUR);
      expect(neighbourApi.statusCode).toBe(403);
      expect(neighbourApi.json().code).toBe('IP_NOT_ALLOWED'); // Better Auth's own error shape
    });
  });
});

describe('IP restrictions: a global allow list', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { ip_restrictions: { allow: ['10.0.0.0/8', '::1/128'], deny: [] } } });
  });
  afterAll(() => t?.close());

  it('admits only its ranges', async () => {
    const inside = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      remoteAddress: '10.1.2.3',
      payload: { email: 'inside@example.com', password: 'SecurePassword123!' },
    });
    expect(inside.statusCode).toBe(201);
    const token = inside.json().token as string;
    const outside = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      remoteAddress: '127.0.0.1',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(outside.statusCode).toBe(403);
    const v6 = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      remoteAddress: '::1',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(v6.statusCode).toBe(200);
  });
});
