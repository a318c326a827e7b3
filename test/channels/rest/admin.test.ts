import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LicenseChanged } from '../../../src/licenses/index.js';
import { createSiblingApp } from '../../helpers/sibling-app.js';
import { addressOf, linkIn, openEmailedLink, type SmtpSink, startSmtpSink } from '../../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const ADMIN_EMAIL = 'boss@example.com';
/** Also in admin.emails, registered by the tests of when the role is granted. */
const LATE_ADMIN = 'late.boss@example.com';
const LINK_ADMIN = 'link.boss@example.com';

describe('admin API (/admin/*)', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let admin: { userId: string; token: string };
  beforeAll(async () => {
    smtp = await startSmtpSink();
    t = await createTestApp({
      config: {
        admin: { emails: [ADMIN_EMAIL.toUpperCase(), LATE_ADMIN, LINK_ADMIN] },
        email: { smtp_url: smtp.url },
      },
    });
    const boss = await registerUser(t.app, { email: ADMIN_EMAIL, name: 'The Boss' });
    admin = { ...boss, token: await verifyEmail(boss) };
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object, token = admin.token) =>
    t.app.inject({ method, url, headers: as(token), ...(payload ? { payload } : {}) });
  const status = async (token: string) =>
    (await t.app.inject({ method: 'GET', url: '/auth/session', headers: as(token) })).statusCode;
  const login = (user: { email: string; password: string }) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password: user.password } });
  const roleOf = async (userId: string) =>
    (await t.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [userId])).rows[0]?.role;
  /**
   * The real proof of an address: a verification email over SMTP, and its link followed. Asked for signed in to the
   * account, as only its own session gets a plain verification link (anyone else gets a link to choose a password).
   */
  async function verifyEmail({ email, token, password }: { email: string; token: string; password: string }) {
    const resend = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      headers: as(token),
      payload: { email },
    });
    expect(resend.statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => addressOf(m) === email && /Verify your email/.test(m.subject ?? ''));
    const link = linkIn(mail, '/auth/email/verify');
    const page = await openEmailedLink(t.app, link);
    expect(page.statusCode).toBe(200);
    if (!/administrator address/.test(page.body)) return token;
    // An address in admin.emails: the link reclaimed the account (password and sessions gone), so its owner chooses
    // the password again with a reset and signs in; that sign-in is granted the role.
    await t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email } });
    const reset = await smtp.waitFor((m) => addressOf(m) === email && /^Reset your/.test(m.subject ?? ''));
    const resetToken = linkIn(reset, '/reset-password').searchParams.get('token');
    await t.app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token: resetToken, password } });
    const signedIn = await login({ email, password });
    expect(signedIn.statusCode).toBe(200);
    return signedIn.json().token as string;
  }

  it('grants the admin role to the configured emails once verified, at the sign-in after the reset (case-insensitive)', async () => {
    expect(await roleOf(admin.userId)).toBe('admin');
  });

  // Regression: the role went to whoever registered a configured address, unproven (verification is off by default).
  it('an unverified registration of a configured address stays a user: sign-up, sign-ins, restart', async () => {
    const late = await registerUser(t.app, { email: LATE_ADMIN });
    expect(await roleOf(late.userId)).toBe('user');
    expect((await login(late)).statusCode).toBe(200);
    const api = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: 'http://localhost:3000' },
      payload: { email: LATE_ADMIN, password: late.password },
    });
    expect(api.statusCode).toBe(200);
    const restarted = await createSiblingApp(t, { admin: { emails: [LATE_ADMIN] } });
    await restarted.close();
    expect(await roleOf(late.userId)).toBe('user');
    expect((await call('GET', '/admin/users', undefined, late.token)).statusCode).toBe(403);

    // Proven by its owner, who chooses the password again (the link reclaimed the account): their sign-in grants it.
    const ownerToken = await verifyEmail(late);
    expect(await roleOf(late.userId)).toBe('admin');
    expect((await call('GET', '/admin/users', undefined, ownerToken)).statusCode).toBe(200);
  });

  it('a magic link proves the address: the session it creates comes with the role', async () => {
    const user = await registerUser(t.app, { email: LINK_ADMIN });
    expect(await roleOf(user.userId)).toBe('user');
    const ask = await t.app.inject({ method: 'POST', url: '/auth/magic-link', payload: { email: LINK_ADMIN } });
    expect(ask.statusCode).toBe(200);
    const mail = await smtp.waitFor((m) => addressOf(m) === LINK_ADMIN && /sign-in link/.test(m.subject ?? ''));
    const link = linkIn(mail, '/auth/magic-link/verify');
    const open = await openEmailedLink(t.app, link);
    expect(open.statusCode).toBe(200);
    expect(await roleOf(user.userId)).toBe('admin');
    expect((await call('GET', '/admin/users', undefined, open.json().token)).statusCode).toBe(200);
  });

  it('at start, only the verified configured addresses are promoted', async () => {
    const unproven = await registerUser(t.app);
    const proven = await registerUser(t.app);
    await verifyEmail(proven);
    const restarted = await createSiblingApp(t, { admin: { emails: [unproven.email, proven.email.toUpperCase()] } });
    await restarted.close();
    expect(await roleOf(unproven.userId)).toBe('user');
    expect(await roleOf(proven.userId)).toBe('admin');
  });

  it('refuses non-admins with 403 ADMIN_REQUIRED on every route (audited), and anonymous callers with 401', async () => {
    const user = await registerUser(t.app);
    const routes: Array<['GET' | 'POST' | 'PUT' | 'DELETE', string, object?]> = [
      ['GET', '/admin/users'],
      ['GET', `/admin/users/${admin.userId}`],
      ['PUT', `/admin/users/${user.userId}/license`, { type: 'enterprise' }],
      ['POST', `/admin/users/${admin.userId}/revoke-sessions`],
      ['POST', `/admin/users/${admin.userId}/disable`],
      ['POST', `/admin/users/${user.userId}/enable`],
      ['PUT', `/admin/users/${user.userId}/role`, { role: 'admin' }],
      ['PUT', `/admin/users/${admin.userId}/ip-allowlist`, { cidrs: ['10.0.0.0/8'] }],
      ['DELETE', `/admin/users/${admin.userId}`],
    ];
    for (const [method, url, payload] of routes) {
      const res = await call(method, url, payload, user.token);
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json().error.code).toBe('ADMIN_REQUIRED');
      const anonymous = await t.app.inject({ method, url, ...(payload ? { payload } : {}) });
      expect(anonymous.statusCode).toBe(401);
    }
    expect(await status(admin.token)).toBe(200);
    const { rows } = await t.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [user.userId]);
    expect(rows[0]?.role).toBe('user');
    const audit = await t.db.query<{ details: { outcome: string } }>(
      "SELECT details FROM auth_audit_log WHERE event = 'admin.action' AND user_id = $1",
      [user.userId],
    );
    expect(audit.rows).toHaveLength(routes.length);
    expect(audit.rows[0]?.details.outcome).toBe('refused');
  });

  it('lists and searches users with pagination', async () => {
    for (let i = 0; i < 3; i++) await registerUser(t.app, { email: `findme${i}@search.test`, name: `Finder ${i}` });
    const page1 = await call('GET', '/admin/users?q=FINDME&limit=2');
    expect(page1.statusCode).toBe(200);
    const body = page1.json();
    expect(body).toMatchObject({ success: true, total: 3, limit: 2, offset: 0 });
    expect(body.users).toHaveLength(2);
    expect(body.users[0]).toMatchObject({ role: 'user', disabled: false, licenseType: 'free' });
    const page2 = (await call('GET', '/admin/users?q=findme&limit=2&offset=2')).json();
    expect(page2.users).toHaveLength(1);
    const emails = [...body.users, ...page2.users].map((u: { email: string }) => u.email).sort();
    expect(emails).toEqual(['findme0@search.test', 'findme1@search.test', 'findme2@search.test']);
    // LIKE wildcards in the query are literal.
    expect((await call('GET', '/admin/users?q=%25')).json().total).toBe(0);
    expect((await call('GET', '/admin/users?limit=0')).statusCode).toBe(400);
    expect((await call('GET', '/admin/users?limit=1000')).statusCode).toBe(400);
  });

  it('shows one user with sessions, passkeys, channel links and license; unknown ids are 404', async () => {
    const user = await registerUser(t.app);
    await t.db.query(
      "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '4242')",
      [user.userId],
    );
    const res = await call('GET', `/admin/users/${user.userId}`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.user).toMatchObject({ id: user.userId, email: user.email, role: 'user', disabled: false });
    expect(body.sessions).toHaveLength(1);
    expect(body.passkeys).toEqual([]);
    expect(body.channelLinks).toMatchObject([{ channel: 'telegram', channelUserId: '4242' }]);
    expect(body.license).toMatchObject({ type: 'free', resourceLimits: { max_ws_connections: 2 } });
    expect(body.ipAllowlist).toEqual([]);
    const missing = await call('GET', '/admin/users/user_0_missing');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('USER_NOT_FOUND');
  });

  it('sets a license: the next request sees it, and a license-changed event fires for open sockets', async () => {
    const user = await registerUser(t.app);
    const changed = new Promise<LicenseChanged>((resolve) => {
      const off = t.app.licenseEvents.onLicenseChanged((e) => {
        if (e.userId !== user.userId) return;
        off();
        resolve(e);
      });
    });
    const res = await call('PUT', `/admin/users/${user.userId}/license`, {
      type: 'pro',
      features: { beta: true },
      resourceLimits: { max_ws_connections: 7 },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().license).toEqual({
      type: 'pro',
      features: { chat: true, passkeys: true, priority: true, beta: true },
      resourceLimits: { max_ws_connections: 7, messages_per_minute: 120 },
    });
    const event = await changed;
    expect(event.license).toMatchObject({ type: 'pro', resourceLimits: { max_ws_connections: 7 } });
    const session = await t.app.inject({ method: 'GET', url: '/auth/session', headers: as(user.token) });
    expect(session.json().license).toMatchObject({ type: 'pro', features: { beta: true } });
    const ctx = await t.app.authenticator.authenticateToken(user.token, 'websocket', '192.0.2.1');
    expect(ctx?.license.resourceLimits.max_ws_connections).toBe(7);

    // Changing only the type keeps the row's own overrides.
    await call('PUT', `/admin/users/${user.userId}/license`, { type: 'enterprise' });
    const after = await t.app.inject({ method: 'GET', url: '/auth/session', headers: as(user.token) });
    expect(after.json().license).toMatchObject({ type: 'enterprise', resourceLimits: { max_ws_connections: 7 } });

    const bad = await call('PUT', `/admin/users/${user.userId}/license`, { type: 'platinum' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.field).toBe('type');
    expect((await call('PUT', '/admin/users/user_0_missing/license', { type: 'pro' })).statusCode).toBe(404);
    expect((await call('PUT', `/admin/users/${user.userId}/license`, { type: 'pro', features: [1] })).statusCode).toBe(
      400,
    );
  });

  // Regression (left alone by the session that fixed the CLI twin): JSON.parse reads 1e999 as Infinity, which
  // passed the schema and was stored as null, so the limit silently became the license type's default.
  it('refuses license features or limits with a number too large to store, or too many or too long keys; the license stays', async () => {
    const user = await registerUser(t.app);
    for (const body of [
      '{"type":"pro","resourceLimits":{"max_ws_connections":1e999}}',
      '{"type":"pro","features":{"a":[{"b":-1e999}]}}',
      // Keys over 64 characters (review F: the key schema of a T.Record limits nothing; propertyNames does).
      JSON.stringify({ type: 'pro', resourceLimits: { ['k'.repeat(65)]: 1 } }),
      JSON.stringify({ type: 'pro', features: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`f${i}`, 1])) }),
    ]) {
      const res = await t.app.inject({
        method: 'PUT',
        url: `/admin/users/${user.userId}/license`,
        headers: { ...as(admin.token), 'content-type': 'application/json' },
        payload: body,
      });
      expect([body, res.statusCode]).toEqual([body, 400]);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
    const session = await t.app.inject({ method: 'GET', url: '/auth/session', headers: as(user.token) });
    expect(session.json().license.type).toBe('free');
  });

  // Regression: the type was looked up as config.licenses.types[type], which also finds Object.prototype's names:
  // "constructor" was taken (200) and the user lost chat.
  it('refuses a license type that is only an inherited name, and the license stays', async () => {
    const user = await registerUser(t.app);
    for (const type of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
      const res = await call('PUT', `/admin/users/${user.userId}/license`, { type });
      expect([type, res.statusCode]).toEqual([type, 400]);
      expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'type' });
    }
    const session = await t.app.inject({ method: 'GET', url: '/auth/session', headers: as(user.token) });
    expect(session.json().license).toMatchObject({ type: 'free', features: { chat: true } });
  });

  it("revokes a user's sessions", async () => {
    const user = await registerUser(t.app);
    const res = await call('POST', `/admin/users/${user.userId}/revoke-sessions`);
    expect(res.json()).toEqual({ success: true, revoked: 1 });
    expect(await status(user.token)).toBe(401);
    expect((await call('POST', '/admin/users/user_0_missing/revoke-sessions')).statusCode).toBe(404);
  });

  it('disables a user: sessions end, no sign-in on REST, Better Auth or Telegram; re-enabling restores sign-in', async () => {
    const user = await registerUser(t.app);
    await t.db.query(
      "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '777001')",
      [user.userId],
    );
    expect(await t.app.authenticator.authenticateTelegram(777001)).not.toBeNull();
    expect((await call('POST', `/admin/users/${user.userId}/disable`)).statusCode).toBe(200);

    expect(await status(user.token)).toBe(401);
    expect(await t.app.authenticator.authenticateWebSocket({ headers: as(user.token), ip: '192.0.2.1' })).toBeNull();
    expect(await t.app.authenticator.authenticateTelegram(777001)).toBeNull();
    const login = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    expect(login.statusCode).toBe(403);
    expect(login.json().error.code).toBe('ACCOUNT_DISABLED');
    const wrong = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: 'not-the-password' },
    });
    expect(wrong.statusCode).toBe(401); // the wrong password still says nothing about the account
    const ba = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'content-type': 'application/json' },
      payload: { email: user.email, password: user.password },
    });
    expect(ba.statusCode).toBe(403);
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
    const detail = (await call('GET', `/admin/users/${user.userId}`)).json();
    expect(detail.user.disabled).toBe(true);

    expect((await call('POST', `/admin/users/${user.userId}/enable`)).statusCode).toBe(200);
    const again = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    expect(again.statusCode).toBe(200);
    expect(await t.app.authenticator.authenticateTelegram(777001)).not.toBeNull();
  });

  it('refuses to disable, demote or delete the calling admin', async () => {
    const before = (await t.db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM auth_audit_log')).rows[0]
      ?.id;
    for (const [method, url, payload] of [
      ['POST', `/admin/users/${admin.userId}/disable`],
      ['PUT', `/admin/users/${admin.userId}/role`, { role: 'user' }],
      ['DELETE', `/admin/users/${admin.userId}`],
    ] as const) {
      const res = await call(method, url, payload);
      expect(res.statusCode).toBe(400);
    }
    expect(await status(admin.token)).toBe(200);
    // Each refusal is audited, as is a request about a user that does not exist.
    expect((await call('POST', '/admin/users/user_0_nobody/disable')).statusCode).toBe(404);
    expect((await call('PUT', '/admin/users/user_0_nobody/role', { role: 'superuser' })).statusCode).toBe(400);
    const { rows } = await t.db.query<{ details: Record<string, string> }>(
      `SELECT details FROM auth_audit_log
        WHERE event = 'admin.action' AND user_id = $1 AND details->>'outcome' = 'refused' AND id > $2 ORDER BY id`,
      [admin.userId, before],
    );
    expect(rows.map((r) => [r.details.action, r.details.target, r.details.reason])).toEqual([
      ['POST /admin/users/:id/disable', admin.userId, 'BAD_REQUEST'],
      ['PUT /admin/users/:id/role', admin.userId, 'BAD_REQUEST'],
      ['DELETE /admin/users/:id', admin.userId, 'BAD_REQUEST'],
      ['POST /admin/users/:id/disable', 'user_0_nobody', 'USER_NOT_FOUND'],
      ['PUT /admin/users/:id/role', 'user_0_nobody', 'VALIDATION_FAILED'],
    ]);
  });

  it('sets roles and a user’s IP allow list', async () => {
    const user = await registerUser(t.app);
    expect((await call('PUT', `/admin/users/${user.userId}/role`, { role: 'admin' })).statusCode).toBe(200);
    expect((await call('GET', '/admin/users', undefined, user.token)).statusCode).toBe(200);
    expect((await call('PUT', `/admin/users/${user.userId}/role`, { role: 'user' })).statusCode).toBe(200);
    expect((await call('GET', '/admin/users', undefined, user.token)).statusCode).toBe(403);
    expect((await call('PUT', `/admin/users/${user.userId}/role`, { role: 'root' })).statusCode).toBe(400);

    const set = await call('PUT', `/admin/users/${user.userId}/ip-allowlist`, { cidrs: ['198.51.100.0/24'] });
    expect(set.statusCode).toBe(200);
    const outside = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      remoteAddress: '192.0.2.9',
      headers: as(user.token),
    });
    expect(outside.statusCode).toBe(403);
    expect((await call('PUT', `/admin/users/${user.userId}/ip-allowlist`, { cidrs: ['nope'] })).statusCode).toBe(400);
  });

  it('deletes a user: their sessions end and the row is gone; the action is audited', async () => {
    const user = await registerUser(t.app);
    const res = await call('DELETE', `/admin/users/${user.userId}`);
    expect(res.statusCode).toBe(200);
    expect(await status(user.token)).toBe(401);
    const { rows } = await t.db.query('SELECT 1 FROM users WHERE id = $1', [user.userId]);
    expect(rows).toHaveLength(0);
    expect((await call('DELETE', `/admin/users/${user.userId}`)).statusCode).toBe(404);
    const audit = await t.db.query<{ details: { action: string; target: string } }>(
      "SELECT details FROM auth_audit_log WHERE event = 'admin.action' AND user_id = $1 ORDER BY id",
      [admin.userId],
    );
    expect(audit.rows.map((r) => r.details)).toContainEqual(
      expect.objectContaining({ action: 'user.delete', target: user.userId }),
    );
  });
});
