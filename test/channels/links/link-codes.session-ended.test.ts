import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannelLinks, hashLinkCode, newLinkCode } from '../../../src/channels/links/channel-links.store.js';
import { signWidgetData } from '../../../src/channels/telegram/login-widget.js';
import { migrate } from '../../../src/db/index.js';
import { createExpiredRowsPurge } from '../../../src/housekeeping/expired-rows.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const TOKEN = '423456789:AAE-session-ended-codes-token';

// Regression: a link code outlived the session that asked for it when that one session ended (revoked by the owner,
// signed out, expired): an intruder's code still linked their Telegram account, which then signed in as the owner.
describe('a pending link code ends with the session that asked for it', () => {
  let t: TestApp;
  let links: ReturnType<typeof createChannelLinks>;
  beforeAll(async () => {
    // Webhook mode without a registered webhook: the bot never polls; the store's redeemCode is what /link runs.
    t = await createTestApp({
      config: { telegram: { bot_token: TOKEN, mode: 'webhook', webhook_secret: 's'.repeat(32) } },
    });
    links = createChannelLinks(t.db);
  });
  afterAll(async () => {
    await t?.close();
  });

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const sessionOf = (token: string) =>
    JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()).sid as string;
  const newCode = async (token: string) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: bearer(token),
    });
    expect(res.statusCode).toBe(201);
    return (res.json() as { code: string }).code;
  };
  /** A second session of the owner's: the intruder's, signed in with a stolen password. */
  const intruderOf = async (owner: { email: string; password: string }) => {
    const login = await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: owner.email, password: owner.password },
    });
    expect(login.statusCode).toBe(200);
    return (login.json() as { token: string }).token;
  };
  const pendingCodes = async (userId: string) =>
    (await t.db.query('SELECT 1 FROM channel_link_codes WHERE user_id = $1', [userId])).rows.length;
  const linkOf = async (telegramId: string) =>
    (
      await t.db.query<{ user_id: string }>(
        "SELECT user_id FROM user_channel_links WHERE channel_type = 'telegram' AND channel_user_id = $1",
        [telegramId],
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

  it('the owner revokes the session that took a code: it neither links nor signs in; their own code does', async () => {
    const owner = await registerUser(t.app);
    const intruder = await intruderOf(owner);
    const code = await newCode(intruder);
    const revoked = await t.app.inject({
      method: 'DELETE',
      url: `/auth/sessions/${sessionOf(intruder)}`,
      headers: bearer(owner.token),
    });
    expect(revoked.statusCode).toBe(200);
    expect(await pendingCodes(owner.userId)).toBe(0);

    expect(await links.redeemCode(code, 'telegram', '8100')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf('8100')).toBeNull();
    expect((await widgetSignIn(8100)).statusCode).not.toBe(200);
    // The session that stays links as before.
    expect(await links.redeemCode(await newCode(owner.token), 'telegram', '8101')).toMatchObject({ ok: true });
    expect(await linkOf('8101')).toBe(owner.userId);
  });

  it('signing out voids the code that session took', async () => {
    const owner = await registerUser(t.app);
    const code = await newCode(owner.token);
    const out = await t.app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(owner.token) });
    expect(out.statusCode).toBe(200);
    expect(await links.redeemCode(code, 'telegram', '8200')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf('8200')).toBeNull();
  });

  it('an expired session voids its code before the purge, and the purge deletes it', async () => {
    const owner = await registerUser(t.app);
    const expire = () =>
      t.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, [
        sessionOf(owner.token),
      ]);
    const code = await newCode(owner.token);
    await expire();
    expect(await links.redeemCode(code, 'telegram', '8300')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf('8300')).toBeNull();

    const other = await registerUser(t.app);
    await newCode(other.token);
    await t.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      sessionOf(other.token),
    ]);
    expect(await pendingCodes(other.userId)).toBe(1);
    await createExpiredRowsPurge(t.db)();
    expect(await pendingCodes(other.userId)).toBe(0);
  });

  it('refuses a code that records no session (issued before codes recorded one), and uses it up', async () => {
    const owner = await registerUser(t.app);
    const code = newLinkCode();
    await t.db.query(
      `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at)
       VALUES ($1, $2, 'telegram', now() + interval '10 minutes')`,
      [hashLinkCode(code), owner.userId],
    );
    expect(await links.redeemCode(code, 'telegram', '8400')).toEqual({ ok: false, reason: 'invalid' });
    expect(await linkOf('8400')).toBeNull();
    expect(await pendingCodes(owner.userId)).toBe(0);
  });

  it('schema.sql adds the column, its cascade and its index to a database from before, keeping its codes', async () => {
    const owner = await registerUser(t.app);
    await t.db.query('ALTER TABLE channel_link_codes DROP COLUMN session_id');
    await t.db.query(
      `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at)
       VALUES ('legacy-code-hash', $1, 'telegram', now() + interval '10 minutes')`,
      [owner.userId],
    );
    await t.db.query("UPDATE gateway_schema_version SET sha256 = 'an older schema.sql'");
    await migrate(t.db);
    await t.db.query("UPDATE gateway_schema_version SET sha256 = 'an older schema.sql'");
    await migrate(t.db); // and again, on the upgraded database
    const fk = await t.db.query<{ on_delete: string; target: string }>(
      `SELECT confdeltype AS on_delete, confrelid::regclass::text AS target FROM pg_constraint
        WHERE conrelid = 'channel_link_codes'::regclass AND contype = 'f'
          AND conkey = ARRAY[(SELECT attnum FROM pg_attribute
                               WHERE attrelid = 'channel_link_codes'::regclass AND attname = 'session_id')]`,
    );
    expect(fk.rows).toEqual([{ on_delete: 'c', target: 'sessions' }]);
    const index = await t.db.query(
      "SELECT 1 FROM pg_indexes WHERE tablename = 'channel_link_codes' AND indexdef LIKE '%(session_id)'",
    );
    expect(index.rows).toHaveLength(1);
    expect(await pendingCodes(owner.userId)).toBe(1);
    // Codes are still issued and redeemed on the upgraded table.
    expect(await links.redeemCode(await newCode(owner.token), 'telegram', '8500')).toMatchObject({ ok: true });
  });
});
