import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTelegramBotApi, type TelegramBotApi } from '../helpers/telegram-bot-api.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// PostgreSQL text cannot hold NUL: each of these reached a query and answered 500 before the guard (found by
// test/faults/hostile-input.test.ts). Now 400 VALIDATION_FAILED, and the Telegram webhook still takes such updates.
describe('NUL characters in requests', () => {
  let t: TestApp;
  let api: TelegramBotApi;
  const SECRET = 'nul-guard-webhook-secret-0123456789';
  beforeAll(async () => {
    api = await createTelegramBotApi({ token: '523456789:AAE-nul-guard' });
    t = await createTestApp({
      config: {
        telegram: { bot_token: api.token, api_root: api.apiRoot, mode: 'webhook', webhook_secret: SECRET },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await api?.close();
  });

  it('refuses NUL in a body, a query or a path parameter of our routes with 400 naming the field', async () => {
    const { token } = await registerUser(t.app);
    const auth = { authorization: `Bearer ${token}` };
    const rename = await t.app.inject({
      method: 'PATCH',
      url: '/auth/devices/some-device',
      headers: auth,
      payload: { name: 'laptop\u0000' },
    });
    expect(rename.statusCode).toBe(400);
    expect(rename.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'name' });
    const options = await t.app.inject({ url: '/auth/passkey/authenticate/options?email=%00a@example.com' });
    expect(options.statusCode).toBe(400);
    expect(options.json().error.code).toBe('VALIDATION_FAILED');
    const session = await t.app.inject({ method: 'DELETE', url: '/auth/sessions/a%00b', headers: auth });
    expect(session.statusCode).toBe(400);
    expect(session.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'id' });
  });

  it("refuses NUL in bodies and queries forwarded to Better Auth's routes", async () => {
    const { token } = await registerUser(t.app);
    const update = await t.app.inject({
      method: 'POST',
      url: '/api/auth/update-user',
      headers: { authorization: `Bearer ${token}`, origin: 'http://localhost:3000' },
      payload: { name: 'a\u0000b' },
    });
    expect(update.statusCode).toBe(400);
    expect(update.json().error.code).toBe('VALIDATION_FAILED');
    const reset = await t.app.inject({
      method: 'POST',
      url: '/api/auth/reset-password',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'token=%00&newPassword=SecurePassword123!',
    });
    expect(reset.statusCode).toBe(400);
    const verify = await t.app.inject({ url: '/api/auth/verify-email?token=%00' });
    expect(verify.statusCode).toBe(400);
    // Without NUL the same requests get through the guard.
    const fine = await t.app.inject({
      method: 'POST',
      url: '/api/auth/update-user',
      headers: { authorization: `Bearer ${token}`, origin: 'http://localhost:3000' },
      payload: { name: 'a b' },
    });
    expect(fine.statusCode).toBe(200);
  });

  /** An administrator's PUT of `userId`'s license: `features` nested or hostile, the body as JSON text or an object. */
  const putLicense = (admin: { token: string }, userId: string, payload: string | object) =>
    t.app.inject({
      method: 'PUT',
      url: `/admin/users/${userId}/license`,
      headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

  // Regression: the guard stopped walking at depth 64, so a NUL deeper down (an admin's 70-level license features)
  // reached PostgreSQL and answered 500. A body nested deeper than the guard walks is refused instead.
  it('refuses a body nested deeper than it walks, where a NUL could hide, with 400 before any query', async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [user.userId]);
    let deep: Record<string, unknown> = { flag: 'x\u0000y' };
    for (let i = 0; i < 70; i++) deep = { a: deep };
    const res = await putLicense(user, user.userId, { type: 'pro', features: deep });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({
      code: 'VALIDATION_FAILED',
      message: 'The body may not nest objects or arrays more than 64 levels deep.',
    });
    // As deep as the guard walks, a NUL is found and named; a body that deep without one passes the guard.
    let fits: Record<string, unknown> = { flag: 'x\u0000y' };
    for (let i = 0; i < 62; i++) fits = { a: fits };
    const named = await putLicense(user, user.userId, { type: 'pro', features: fits });
    expect(named.statusCode).toBe(400);
    expect(named.json().error.field).toBe(`features.${'a.'.repeat(62)}flag`);
    let clean: Record<string, unknown> = { flag: 'plain' };
    for (let i = 0; i < 62; i++) clean = { a: clean };
    const stored = await putLicense(user, user.userId, { type: 'pro', features: clean });
    expect(stored.statusCode).toBe(200);
  });

  // Regression: a lone UTF-16 surrogate ("\ud800", valid JSON text) in a license's features reached jsonb, which
  // PostgreSQL refuses ("invalid input syntax for type json"): 500. Now 400 naming the field, like NUL.
  it('refuses a lone surrogate in a body value or key with 400 naming the field, and takes a paired one', async () => {
    const admin = await registerUser(t.app);
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [admin.userId]);
    const cases: [payload: string, field: string][] = [
      ['{"type":"pro","features":{"note":"\\ud800"}}', 'features.note'],
      ['{"type":"pro","features":{"note":"a\\ude00b"}}', 'features.note'],
      ['{"type":"pro","features":{"notes":["ok","\\ud83d"]}}', 'features.notes[1]'],
      ['{"type":"pro","features":{"\\udbff":true}}', 'features.\udbff'],
    ];
    for (const [payload, field] of cases) {
      const res = await putLicense(admin, user.userId, payload);
      expect(res.statusCode, payload).toBe(400);
      expect(res.json().error, payload).toMatchObject({
        code: 'VALIDATION_FAILED',
        message: 'Text may not contain unpaired UTF-16 surrogates.',
        field,
      });
    }
    const paired = await putLicense(admin, user.userId, '{"type":"pro","features":{"note":"\\ud83d\\ude00 ok"}}');
    expect(paired.statusCode).toBe(200);
    const { rows } = await t.db.query<{ features: { note: string } }>(
      'SELECT features FROM user_licenses WHERE user_id = $1',
      [user.userId],
    );
    expect(rows[0]?.features.note).toBe('\u{1F600} ok');
  });

  it('leaves a percent-encoded surrogate in a URL as it is (invalid UTF-8 is not decoded): no server error', async () => {
    const { token } = await registerUser(t.app);
    const options = await t.app.inject({ url: '/auth/passkey/authenticate/options?email=%ED%A0%80@example.com' });
    expect(options.statusCode).toBeLessThan(500);
    const session = await t.app.inject({
      method: 'DELETE',
      url: '/auth/sessions/a%ED%A0%80b',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(session.statusCode).toBeLessThan(500);
  });

  it('lets the Telegram webhook take an update with NUL in a name (a refusal would make Telegram retry it)', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/telegram/webhook',
      headers: { 'x-telegram-bot-api-secret-token': SECRET },
      payload: {
        update_id: 7,
        message: {
          message_id: 1,
          date: 1,
          from: { id: 6_600_001, is_bot: false, first_name: 'N\u0000UL' },
          chat: { id: 6_600_001, type: 'private', first_name: 'N\u0000UL' },
          text: '/whoami',
          entities: [{ type: 'bot_command', offset: 0, length: 7 }],
        },
      },
    });
    expect(res.statusCode).toBe(200);
    expect(api.sentMessages.some((m) => m.chat_id === 6_600_001)).toBe(true);
  });
});
