import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannelLinks, hashLinkCode, newLinkCode } from '../../../src/channels/links/channel-links.store.js';
import { signWidgetData } from '../../../src/channels/telegram/login-widget.js';
import { statementsWaitingForALock } from '../../helpers/db-locks.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const TOKEN = '323456789:AAE-voided-codes-token';

// Regression: a pending link code outlived a password change or reset and a disable, so whoever took it with a stolen
// password linked their own Telegram account (and signed in through the widget) after the owner shut them out.
describe('pending channel link codes do not outlive the credentials or the account that issued them', () => {
  let t: TestApp;
  let links: ReturnType<typeof createChannelLinks>;
  let admin: Awaited<ReturnType<typeof registerUser>>;
  beforeAll(async () => {
    // Webhook mode without a registered webhook: the bot never polls; the store's redeemCode is what /start runs.
    t = await createTestApp({
      config: { telegram: { bot_token: TOKEN, mode: 'webhook', webhook_secret: 'v'.repeat(32) } },
    });
    links = createChannelLinks(t.db);
    admin = await registerUser(t.app);
    await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [admin.userId]);
  });
  afterAll(async () => {
    await t?.close();
  });

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const newCode = async (token: string) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: bearer(token),
    });
    expect(res.statusCode).toBe(201);
    return (res.json() as { code: string }).code;
  };
  const pendingCodes = async (userId: string) =>
    (await t.db.query('SELECT 1 FROM channel_link_codes WHERE user_id = $1', [userId])).rows.length;
  const linkOf = async (telegramId: number) =>
    (
      await t.db.query<{ user_id: string }>(
        "SELECT user_id FROM user_channel_links WHERE channel_type = 'telegram' AND channel_user_id = $1",
        [String(telegramId)],
      )
    ).rows[0]?.user_id ?? null;
  const widgetSignIn = (telegramId: number) => {
    const fields = { id: telegramId, first_name: 'Mallory', auth_date: Math.floor(Date.now() / 1000) };
    return t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/widget',
      payload: { ...fields, hash: signWidgetData(fields, TOKEN) },
    });
  };

  it('a password change voids the code another session took, so it neither links nor signs in', async () => {
    const owner = await registerUser(t.app);
    const attacker = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: owner.email, password: owner.password },
    });
    const code = await newCode((attacker.json() as { token: string }).token);
    const bystander = await registerUser(t.app);
    const bystanderCode = await newCode(bystander.token);

    const change = await t.app.inject({
      method: 'POST',
      url: '/auth/password/change',
      headers: bearer(owner.token),
      payload: { currentPassword: owner.password, newPassword: 'BrandNewPassword789!' },
    });
    expect(change.statusCode).toBe(200);
    expect(await pendingCodes(owner.userId)).toBe(0);

    expect(await links.redeemCode(code, 'telegram', '7100')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf(7100)).toBeNull();
    expect((await widgetSignIn(7100)).statusCode).not.toBe(200);
    // Only that user's codes go.
    expect(await links.redeemCode(bystanderCode, 'telegram', '7101')).toMatchObject({ ok: true });
  });

  it('any password write voids the code (a reset, or plain SQL), not other changes to the credential row', async () => {
    const owner = await registerUser(t.app);
    const code = await newCode(owner.token);
    await t.db.query(
      "UPDATE user_credentials SET updated_at = now() WHERE user_id = $1 AND provider_id = 'credential'",
      [owner.userId],
    );
    expect(await pendingCodes(owner.userId)).toBe(1);
    const { rowCount } = await t.db.query(
      "UPDATE user_credentials SET password_hash = 'reset:' || password_hash WHERE user_id = $1 AND provider_id = 'credential'",
      [owner.userId],
    );
    expect(rowCount).toBe(1);
    expect(await links.redeemCode(code, 'telegram', '7200')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf(7200)).toBeNull();
  });

  it('disabling voids the code, and re-enabling does not bring it back', async () => {
    const owner = await registerUser(t.app);
    const code = await newCode(owner.token);
    const disable = await t.app.inject({
      method: 'POST',
      url: `/admin/users/${owner.userId}/disable`,
      headers: bearer(admin.token),
    });
    expect(disable.statusCode).toBe(200);
    expect(await pendingCodes(owner.userId)).toBe(0);
    const enable = await t.app.inject({
      method: 'POST',
      url: `/admin/users/${owner.userId}/enable`,
      headers: bearer(admin.token),
    });
    expect(enable.statusCode).toBe(200);
    expect(await links.redeemCode(code, 'telegram', '7300')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf(7300)).toBeNull();
  });

  it("refuses a disabled user's code like an unknown one, and uses it up", async () => {
    const owner = await registerUser(t.app);
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [owner.userId]);
    const code = newLinkCode();
    await t.db.query(
      `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at)
       VALUES ($1, $2, 'telegram', now() + interval '10 minutes')`,
      [hashLinkCode(code), owner.userId],
    );
    expect(await links.redeemCode(code, 'telegram', '7400')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf(7400)).toBeNull();
    expect(await pendingCodes(owner.userId)).toBe(0);
    await t.db.query('UPDATE users SET disabled_at = NULL WHERE id = $1', [owner.userId]);
    expect(await links.redeemCode(code, 'telegram', '7400')).toEqual({ ok: false, reason: 'invalid' });
  });

  it('ending the other sessions (the user) or all of them (an administrator) voids pending codes', async () => {
    const owner = await registerUser(t.app);
    const code = await newCode(owner.token);
    const others = await t.app.inject({
      method: 'POST',
      url: '/auth/sessions/revoke-others',
      headers: bearer(owner.token),
    });
    expect(others.statusCode).toBe(200);
    expect(await links.redeemCode(code, 'telegram', '7500')).toEqual({ ok: false, reason: 'invalid' });

    const second = await newCode(owner.token);
    const all = await t.app.inject({
      method: 'POST',
      url: `/admin/users/${owner.userId}/revoke-sessions`,
      headers: bearer(admin.token),
    });
    expect(all.statusCode).toBe(200);
    expect(all.json()).toMatchObject({ revoked: 1 });
    expect(await links.redeemCode(second, 'telegram', '7501')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf(7500)).toBeNull();
    expect(await linkOf(7501)).toBeNull();
  });
  // Regression: the link-code route checked the session, then inserted the code in another transaction without
  // checking it again. A password change committing between the two ended the session and voided the codes there
  // were; the code inserted after it linked the taker's Telegram account (and signed it in by the widget).
  it('a link code asked for while the password changes is refused (401) and leaves nothing to redeem', async () => {
    const owner = await registerUser(t.app);
    const login = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: owner.email, password: owner.password },
    });
    const takerToken = (login.json() as { token: string }).token;
    // The request passes its session checks, then waits at issueCode's per-user lock while the change commits.
    let held!: () => void;
    const isHeld = new Promise<void>((r) => {
      held = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const hold = t.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`channel-link-code:telegram:${owner.userId}`]);
      held();
      await released;
    });
    await isHeld;
    const asked = t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: bearer(takerToken),
    });
    await statementsWaitingForALock(t.db, 1);
    const change = await t.app.inject({
      method: 'POST',
      url: '/auth/password/change',
      headers: bearer(owner.token),
      payload: { currentPassword: owner.password, newPassword: 'BrandNewPassword789!' },
    });
    expect(change.json()).toMatchObject({ endedSessions: 1 });
    release();
    await hold;

    const res = await asked;
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ error: { code: 'INVALID_TOKEN' } });
    expect(await pendingCodes(owner.userId)).toBe(0);
    expect(await linkOf(7600)).toBeNull();
    expect((await widgetSignIn(7600)).statusCode).not.toBe(200);
  });

  // The same without choreography: requests queued on the per-user lock inserted their codes after the change.
  it('30 link-code requests racing a password change leave no live code (10 rounds)', async () => {
    const live: number[] = [];
    for (let round = 0; round < 10; round++) {
      const owner = await registerUser(t.app);
      const login = await t.app.inject({
        method: 'POST',
        url: '/auth/login',
        payload: { email: owner.email, password: owner.password },
      });
      const old = (login.json() as { token: string }).token;
      const asks = Array.from({ length: 30 }, () =>
        t.app.inject({ method: 'POST', url: '/auth/channels/telegram/link-code', headers: bearer(old) }),
      );
      const change = t.app.inject({
        method: 'POST',
        url: '/auth/password/change',
        headers: bearer(owner.token),
        payload: { currentPassword: owner.password, newPassword: 'BrandNewPassword789!' },
      });
      const [changed, ...answers] = await Promise.all([change, ...asks]);
      expect(changed.statusCode).toBe(200);
      expect(answers.every((r) => r.statusCode === 201 || r.statusCode === 401)).toBe(true);
      live.push(await pendingCodes(owner.userId));
    }
    expect(live).toEqual(Array(10).fill(0));
  }, 120_000);

  // Regression: revoke-others and the admin's revoke-all voided codes in the statement that deleted the sessions, with
  // its snapshot taken before the DELETE waited for a code being issued by one of them: that code survived.
  it('"sign out other sessions" voids a link code that a session it ends was issuing meanwhile', async () => {
    const owner = await registerUser(t.app);
    await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: owner.email, password: owner.password },
    });
    const { rows } = await t.db.query<{ id: string }>(
      'SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1',
      [owner.userId],
    );
    const other = rows[0]?.id as string;
    // A code being issued by the other session, as issueCode does it: the session held, the code written, not yet
    // committed when the revocation starts.
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    let written!: () => void;
    const isWritten = new Promise<void>((r) => {
      written = r;
    });
    const issuing = t.db.transaction(async (tx) => {
      await tx.query('SELECT 1 FROM sessions WHERE id = $1 FOR SHARE', [other]);
      await tx.query(
        `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at)
         VALUES ($1, $2, 'telegram', now() + interval '10 minutes')`,
        [hashLinkCode(newLinkCode()), owner.userId],
      );
      written();
      await released;
    });
    await isWritten;
    const revoke = t.app.inject({ method: 'POST', url: '/auth/sessions/revoke-others', headers: bearer(owner.token) });
    await statementsWaitingForALock(t.db, 1);
    release();
    await issuing;
    expect((await revoke).json()).toMatchObject({ revoked: 1 });
    expect(await pendingCodes(owner.userId)).toBe(0);
  });
});
