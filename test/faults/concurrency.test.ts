import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replies } from '../../src/channels/telegram/replies.js';
import { addressOf, linkIn, type SmtpSink, startSmtpSink } from '../helpers/smtp-sink.js';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTelegramBotApi, type TelegramBotApi } from '../helpers/telegram-bot-api.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import { assertion, ORIGIN, postAuthentication, registrationOptions } from '../passkeys/helpers.js';

// Issue 8, item 11: one secret used 50 times at once through the entry point a client really uses. Exactly one use
// wins, every other gets a stable refusal, and the database holds exactly what one use leaves behind.
const N = 50;
const TELEGRAM_TOKEN = '323456789:AAE-concurrency-test-token';
const WEBHOOK_SECRET = 'concurrency-webhook-secret-0123456789';

describe('concurrency: the same secret used 50 times in parallel', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let botApi: TelegramBotApi;

  beforeAll(async () => {
    smtp = await startSmtpSink();
    botApi = await createTelegramBotApi({ token: TELEGRAM_TOKEN });
    t = await createTestApp({
      config: {
        email: { smtp_url: smtp.url },
        telegram: {
          bot_token: TELEGRAM_TOKEN,
          api_root: botApi.apiRoot,
          mode: 'webhook',
          webhook_secret: WEBHOOK_SECRET,
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await botApi?.close();
    await smtp?.close();
  });

  const count = async (sql: string, params: unknown[] = []) =>
    Number((await t.db.query<{ n: string | number }>(`SELECT count(*) AS n FROM (${sql}) q`, params)).rows[0]?.n);
  const auditCount = (event: string, userId: string) =>
    count('SELECT 1 FROM auth_audit_log WHERE event = $1 AND user_id = $2', [event, userId]);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  it('one email registered 50 times (case and space variants): one 201, 49 x 409 EMAIL_TAKEN, one account', async () => {
    const variants = ['race@example.com', 'Race@Example.com', ' race@example.com ', 'RACE@EXAMPLE.COM'];
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        t.app.inject({
          method: 'POST',
          url: '/auth/register',
          payload: { email: variants[i % variants.length], password: 'SecurePassword123!', name: `racer ${i}` },
        }),
      ),
    );
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
    for (const r of results.filter((r) => r.statusCode !== 201)) {
      expect(r.statusCode).toBe(409);
      expect(r.json().error.code).toBe('EMAIL_TAKEN');
    }

    const users = await t.db.query<{ id: string }>(`SELECT id FROM users WHERE lower(email) = 'race@example.com'`);
    expect(users.rows).toHaveLength(1);
    const userId = users.rows[0]?.id as string;
    expect(await count('SELECT 1 FROM user_credentials WHERE user_id = $1', [userId])).toBe(1);
    expect(await count('SELECT 1 FROM sessions WHERE user_id = $1', [userId])).toBe(1);
    // The winner's token is the one session's.
    const winner = results.find((r) => r.statusCode === 201)?.json() as { token: string; userId: string };
    expect(winner.userId).toBe(userId);
    expect(
      (await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(winner.token) })).statusCode,
    ).toBe(200);
  });

  it('one link code sent by 50 Telegram accounts at once (/link through the webhook): one link, 49 refusals', async () => {
    const user = await registerUser(t.app);
    const issued = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: bearer(user.token),
    });
    expect(issued.statusCode).toBe(201);
    const { code } = issued.json() as { code: string };
    expect(await count('SELECT 1 FROM channel_link_codes WHERE user_id = $1', [user.userId])).toBe(1);

    // What Telegram delivers when 50 people send the code at the same moment: 50 webhook calls in flight at once.
    const telegramIds = Array.from({ length: N }, (_, i) => 8_100_000 + i);
    const results = await Promise.all(
      telegramIds.map((id, i) =>
        t.app.inject({
          method: 'POST',
          url: '/telegram/webhook',
          headers: { 'x-telegram-bot-api-secret-token': WEBHOOK_SECRET },
          payload: {
            update_id: 500_000 + i,
            message: {
              message_id: 1,
              date: Math.floor(Date.now() / 1000),
              from: { id, is_bot: false, first_name: `racer ${i}` },
              chat: { id, type: 'private', first_name: `racer ${i}` },
              text: `/link ${code}`,
              entities: [{ type: 'bot_command', offset: 0, length: 5 }],
            },
          },
        }),
      ),
    );
    for (const r of results) expect(r.statusCode).toBe(200);

    // Every sender got exactly one answer before its webhook call returned: one "linked", 49 "not valid".
    const answers = telegramIds.map((id) => botApi.sentMessages.filter((m) => m.chat_id === id).map((m) => m.text));
    for (const a of answers) expect(a).toHaveLength(1);
    const texts = answers.map((a) => a[0]);
    expect(texts.filter((x) => x === replies.linked(user.email))).toHaveLength(1);
    expect(texts.filter((x) => x === replies.codeInvalid)).toHaveLength(N - 1);

    const winner = telegramIds[texts.indexOf(replies.linked(user.email))];
    const links = await t.db.query<{ channel_user_id: string }>(
      'SELECT channel_user_id FROM user_channel_links WHERE user_id = $1',
      [user.userId],
    );
    expect(links.rows).toEqual([{ channel_user_id: String(winner) }]);
    expect(
      await count(`SELECT 1 FROM user_channel_links WHERE channel_type = 'telegram' AND channel_user_id = ANY($1)`, [
        telegramIds.map(String),
      ]),
    ).toBe(1);
    expect(await count('SELECT 1 FROM channel_link_codes WHERE user_id = $1', [user.userId])).toBe(0);
    expect(await auditCount('channel.linked', user.userId)).toBe(1);
    expect(
      await count(
        `SELECT 1 FROM auth_audit_log WHERE event = 'channel.link_refused'
          AND details->>'reason' = 'invalid' AND details->>'channelUserId' = ANY($1)`,
        [telegramIds.map(String)],
      ),
    ).toBe(N - 1);
  });

  it('one passkey sign-in challenge completed 50 times: one 200, 49 x 400 PASSKEY_CHALLENGE_INVALID, one session', async () => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    const registration = authenticator.createCredential(await registrationOptions(t.app, user.token), ORIGIN);
    const registered = await t.app.inject({
      method: 'POST',
      url: '/api/auth/passkey/register',
      headers: bearer(user.token),
      payload: { credential: registration },
    });
    expect(registered.statusCode).toBe(200);
    const passkeyId = registered.json().passkey.id as string;

    const credential = await assertion(t.app, authenticator);
    const sessionsBefore = await count('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(await count(`SELECT 1 FROM verification_tokens WHERE identifier LIKE 'passkey:authentication:%'`)).toBe(1);

    const results = await Promise.all(Array.from({ length: N }, () => postAuthentication(t.app, credential)));
    const ok = results.filter((r) => r.statusCode === 200);
    expect(ok).toHaveLength(1);
    for (const r of results.filter((r) => r.statusCode !== 200)) {
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe('PASSKEY_CHALLENGE_INVALID');
    }

    expect(await count('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId])).toBe(sessionsBefore + 1);
    expect(await count(`SELECT 1 FROM verification_tokens WHERE identifier LIKE 'passkey:authentication:%'`)).toBe(0);
    expect(await count('SELECT 1 FROM passkeys WHERE user_id = $1', [user.userId])).toBe(1);
    const counter = await t.db.query<{ counter: string }>('SELECT counter FROM passkeys WHERE id = $1', [passkeyId]);
    // The stored counter moved once: to the value of the one assertion that was signed.
    expect(authenticator.getCredential(registration.id)?.signCount).toBe(1);
    expect(Number(counter.rows[0]?.counter)).toBe(1); // BIGINT: pg returns it as a string
    // The winner's token names the one new session.
    const me = await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(ok[0]?.json().token) });
    expect(me.statusCode).toBe(200);
    expect(me.json().user.id).toBe(user.userId);
  });

  it('one password reset token used 50 times: one 200, 49 x 400 INVALID_RESET_TOKEN, one password change', async () => {
    const user = await registerUser(t.app);
    const before = smtp.messages.length;
    const forgot = await t.app.inject({
      method: 'POST',
      url: '/auth/password/forgot',
      payload: { email: user.email },
    });
    expect(forgot.statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => addressOf(m) === user.email && smtp.messages.indexOf(m) >= before);
    const token = linkIn(mail, '/reset-password').searchParams.get('token') ?? '';
    expect(token).not.toBe('');
    // Reset tokens and the like, not passkey challenges or send-limit markers (the password-changed notice takes one).
    const tokens = `SELECT 1 FROM verification_tokens WHERE identifier NOT LIKE 'passkey:%' AND identifier NOT LIKE '%-sent:%'`;
    const tokensBefore = await count(tokens);
    const hashBefore = await t.db.query<{ password_hash: string }>(
      'SELECT password_hash FROM user_credentials WHERE user_id = $1',
      [user.userId],
    );

    const password = (i: number) => `ParallelPassword-${String(i).padStart(2, '0')}`;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        t.app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token, password: password(i) } }),
      ),
    );
    const ok = results.filter((r) => r.statusCode === 200);
    expect(ok).toHaveLength(1);
    for (const r of results.filter((r) => r.statusCode !== 200)) {
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe('INVALID_RESET_TOKEN');
    }

    // The token is gone, the one credential row holds a new hash, one reset is recorded, every session ended.
    expect(await count(tokens)).toBe(tokensBefore - 1);
    const hashAfter = await t.db.query<{ password_hash: string }>(
      'SELECT password_hash FROM user_credentials WHERE user_id = $1',
      [user.userId],
    );
    expect(hashAfter.rows).toHaveLength(1);
    expect(hashAfter.rows[0]?.password_hash).not.toBe(hashBefore.rows[0]?.password_hash);
    expect(await auditCount('password.reset_completed', user.userId)).toBe(1);
    expect(await count('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId])).toBe(0);
    // The winner's password is the one that works; a loser's does not.
    const winner = results.indexOf(ok[0] as (typeof results)[number]);
    const login = (pw: string) =>
      t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password: pw } });
    expect((await login(password(winner))).statusCode).toBe(200);
    expect((await login(password((winner + 1) % N))).statusCode).toBe(401);
    expect((await login(user.password)).statusCode).toBe(401);
  });
});
