import { createHash } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannelLinks } from '../../../src/channels/links/channel-links.store.js';
import { signWidgetData } from '../../../src/channels/telegram/login-widget.js';
import { statementsWaitingForALock } from '../../helpers/db-locks.js';
import { createTelegramBotApi, type TelegramBotApi } from '../../helpers/telegram-bot-api.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const TOKEN = '323456789:AAE-routes-test-token';

describe('account linking from the web side', () => {
  let api: TelegramBotApi;
  let t: TestApp;
  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, botUsername: 'gateway_links_bot' });
    // Webhook mode without a registered webhook: the bot is on but never polls, so these tests own the database.
    t = await createTestApp({
      config: {
        telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'webhook', webhook_secret: 'x'.repeat(32) },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await api?.close();
  });

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const askCode = (token: string) =>
    t.app.inject({ method: 'POST', url: '/auth/channels/telegram/link-code', headers: bearer(token) });
  const newCode = async (token: string) => (await askCode(token)).json() as { code: string; expiresAt: string };

  describe('link codes', () => {
    it('needs a signed-in user', async () => {
      const res = await t.app.inject({ method: 'POST', url: '/auth/channels/telegram/link-code' });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error: { code: 'AUTH_REQUIRED' } });
    });

    it('stores only a SHA-256 of the code, expiring in 10 minutes; a new code replaces the old one', async () => {
      const { token, userId } = await registerUser(t.app);
      const first = await newCode(token);
      expect(first.code).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const second = await newCode(token);
      expect(second.code).not.toBe(first.code);
      const { rows } = await t.db.query<{ code_hash: string; ttl: number }>(
        'SELECT code_hash, extract(epoch FROM expires_at - created_at)::int AS ttl FROM channel_link_codes WHERE user_id = $1',
        [userId],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]?.code_hash).toBe(createHash('sha256').update(second.code).digest('hex'));
      expect(JSON.stringify(rows)).not.toContain(second.code);
      expect(rows[0]?.ttl).toBeGreaterThanOrEqual(599);
      expect(rows[0]?.ttl).toBeLessThanOrEqual(601);
    });

    // Regression: DELETE-then-INSERT under READ COMMITTED let concurrent requests each leave a working code.
    it('leaves exactly one live code however many requests for one user run at once', async () => {
      const { token, userId } = await registerUser(t.app);
      const answers = await Promise.all(Array.from({ length: 8 }, () => askCode(token)));
      expect(answers.map((r) => r.statusCode)).toEqual(Array(8).fill(201));
      const { rows } = await t.db.query('SELECT 1 FROM channel_link_codes WHERE user_id = $1', [userId]);
      expect(rows).toHaveLength(1);
      const links = createChannelLinks(t.db);
      const outcomes = [];
      for (const [i, res] of answers.entries()) {
        outcomes.push(await links.redeemCode((res.json() as { code: string }).code, 'telegram', String(880000 + i)));
      }
      expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
    });

    it('links one Telegram account to one user even when two users codes race for it', async () => {
      const links = createChannelLinks(t.db);
      const a = await registerUser(t.app);
      const b = await registerUser(t.app);
      const [ca, cb] = [await newCode(a.token), await newCode(b.token)];
      const outcomes = await Promise.all([
        links.redeemCode(ca.code, 'telegram', '777777'),
        links.redeemCode(cb.code, 'telegram', '777777'),
      ]);
      expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
      const { rows } = await t.db.query(
        "SELECT user_id FROM user_channel_links WHERE channel_type = 'telegram' AND channel_user_id = '777777'",
      );
      expect(rows).toHaveLength(1);
    });
  });

  describe('GET and DELETE /auth/channels', () => {
    it('lists links of any channel type, unlinks by type or account, and 404s when nothing matches', async () => {
      const { token, userId } = await registerUser(t.app);
      // The design's raw SQL keeps working, and any lowercase channel type is accepted by the model.
      await t.db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id)
         VALUES ($1, 'telegram', '111'), ($1, 'slack', 'U222'), ($1, 'discord', '333')`,
        [userId],
      );
      const list = await t.app.inject({ method: 'GET', url: '/auth/channels', headers: bearer(token) });
      expect(list.statusCode).toBe(200);
      expect(
        (list.json() as { channels: Array<{ channelType: string; channelUserId: string }> }).channels.map(
          (c) => `${c.channelType}:${c.channelUserId}`,
        ),
      ).toEqual(['telegram:111', 'slack:U222', 'discord:333']);
      expect(await t.app.authenticator.authenticateTelegram(111)).toMatchObject({ userId, channel: 'telegram' });

      const del = await t.app.inject({ method: 'DELETE', url: '/auth/channels/slack', headers: bearer(token) });
      expect(del.json()).toEqual({ success: true, removed: 1 });
      const again = await t.app.inject({ method: 'DELETE', url: '/auth/channels/slack', headers: bearer(token) });
      expect(again.statusCode).toBe(404);
      expect(again.json()).toMatchObject({ error: { code: 'CHANNEL_LINK_NOT_FOUND' } });
      const one = await t.app.inject({
        method: 'DELETE',
        url: '/auth/channels/telegram?channelUserId=999',
        headers: bearer(token),
      });
      expect(one.statusCode).toBe(404);
      const tg = await t.app.inject({
        method: 'DELETE',
        url: '/auth/channels/telegram?channelUserId=111',
        headers: bearer(token),
      });
      expect(tg.json()).toEqual({ success: true, removed: 1 });
      expect(await t.app.authenticator.authenticateTelegram(111)).toBeNull();
      const bad = await t.app.inject({ method: 'DELETE', url: '/auth/channels/Bad%20Type', headers: bearer(token) });
      expect(bad.statusCode).toBe(400);
    });

    it('never touches another user links', async () => {
      const owner = await registerUser(t.app);
      const other = await registerUser(t.app);
      await t.db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '4242')`,
        [owner.userId],
      );
      const del = await t.app.inject({
        method: 'DELETE',
        url: '/auth/channels/telegram?channelUserId=4242',
        headers: bearer(other.token),
      });
      expect(del.statusCode).toBe(404);
      expect(await t.app.authenticator.authenticateTelegram(4242)).toMatchObject({ userId: owner.userId });
    });
  });

  describe('POST /auth/channels/telegram/widget', () => {
    const widget = (id: number, overrides: Record<string, string | number> = {}, token = TOKEN) => {
      const fields = { id, first_name: 'Ada', username: 'ada', auth_date: Math.floor(Date.now() / 1000), ...overrides };
      return { ...fields, hash: signWidgetData(fields, token) };
    };

    const linkWidget = (token: string, id: number) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/channels/telegram/widget',
        headers: bearer(token),
        payload: widget(id),
      });

    it('links the Telegram account of a correctly signed widget to the signed-in user', async () => {
      const { token, userId } = await registerUser(t.app);
      const res = await linkWidget(token, 5551);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ success: true, userId, linked: true });
      expect(await t.app.authenticator.authenticateTelegram(5551)).toMatchObject({ userId });
    });

    it('linking needs a recent sign-in, for a link code and for the widget (anonymous users excepted)', async () => {
      const { token, userId } = await registerUser(t.app);
      await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 hour' WHERE user_id = $1`, [userId]);
      const code = await askCode(token);
      expect(code.statusCode).toBe(403);
      expect(code.json().error.code).toBe('REAUTH_REQUIRED');
      const linked = await linkWidget(token, 5559);
      expect(linked.statusCode).toBe(403);
      expect(linked.json().error.code).toBe('REAUTH_REQUIRED');
      expect(await t.app.authenticator.authenticateTelegram(5559)).toBeNull();

      const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
        userId: string;
        token: string;
      };
      await t.db.query(`UPDATE sessions SET created_at = now() - interval '3 days' WHERE user_id = $1`, [anon.userId]);
      expect((await askCode(anon.token)).statusCode).toBe(201);
    });

    // Regression: the widget route was missing from the access plugin's sign-in routes: its sessions were filed under
    // no device (so removing the device did not end them), and globally refused addresses were not refused up front.
    it('a widget sign-in is filed under the device that asked, as every sign-in is', async () => {
      const { userId } = await registerUser(t.app);
      await t.db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '5570')`,
        [userId],
      );
      const key = 'd'.repeat(43);
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/channels/telegram/widget',
        headers: { 'x-device-id': key },
        payload: widget(5570),
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-device-id']).toBe(key);
      const sid = JSON.parse(Buffer.from(res.json().token.split('.')[1], 'base64url').toString()).sid as string;
      const { rows } = await t.db.query<{ device_id: string | null }>('SELECT device_id FROM sessions WHERE id = $1', [
        sid,
      ]);
      expect(rows[0]?.device_id).toBeTruthy();
    });

    it('signs in the linked user when no session is sent; the token works', async () => {
      const { userId } = await registerUser(t.app);
      await t.db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '5552')`,
        [userId],
      );
      const res = await t.app.inject({ method: 'POST', url: '/auth/channels/telegram/widget', payload: widget(5552) });
      expect(res.statusCode).toBe(200);
      const body = res.json() as { userId: string; token: string; linked: boolean };
      expect(body).toMatchObject({ userId, linked: false });
      const session = await t.app.inject({ method: 'GET', url: '/auth/session', headers: bearer(body.token) });
      expect(session.json()).toMatchObject({ user: { id: userId } });
    });

    /**
     * Runs `request` while a transaction holds the user's row FOR UPDATE (as a reclaim of the address does, or a
     * disable), waits until the request waits on a lock, then runs `meanwhile` in that transaction and commits.
     */
    const whileUserLocked = async <T>(
      userId: string,
      request: () => Promise<T>,
      meanwhile: (tx: { query: TestApp['db']['query'] }) => Promise<unknown>,
    ): Promise<T> => {
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => {
        locked = r;
      });
      let go!: () => void;
      const proceed = new Promise<void>((r) => {
        go = r;
      });
      const held = t.db.transaction(async (tx) => {
        await tx.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [userId]);
        locked();
        await proceed;
        await meanwhile(tx);
      });
      await isLocked;
      const answer = request();
      await statementsWaitingForALock(t.db, 1);
      go();
      await held;
      return answer;
    };

    // Regression: the signed-in widget linked the Telegram account without checking that the session still existed,
    // so one ended meanwhile (a password change, a revocation, a reclaim) still added a way to sign in.
    it('does not link for a session ended while the request ran: 401 INVALID_TOKEN', async () => {
      const { token, userId } = await registerUser(t.app);
      const sid = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()).sid as string;
      const res = await whileUserLocked(
        userId,
        () => linkWidget(token, 5580),
        (tx) => tx.query('DELETE FROM sessions WHERE id = $1', [sid]),
      );
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error: { code: 'INVALID_TOKEN' } });
      expect(await t.app.authenticator.authenticateTelegram(5580)).toBeNull();
    });

    // Regression: a reclaim (the address owner takes the account back: links and sessions deleted) committing between
    // the widget's lookup of the link and its new session left that session standing, signed in by a removed link.
    it('a widget sign-in that a reclaim overtakes answers CHANNEL_NOT_LINKED and leaves no session', async () => {
      const { userId } = await registerUser(t.app);
      await t.db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '5581')`,
        [userId],
      );
      const res = await whileUserLocked(
        userId,
        () => t.app.inject({ method: 'POST', url: '/auth/channels/telegram/widget', payload: widget(5581) }),
        (tx) =>
          tx.query(
            `WITH s AS (DELETE FROM sessions WHERE user_id = $1 RETURNING 1)
             DELETE FROM user_channel_links WHERE user_id = $1`,
            [userId],
          ),
      );
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error: { code: 'CHANNEL_NOT_LINKED' } });
      const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [userId]);
      expect(rows).toHaveLength(0);
    });

    it('refuses a forged hash, a changed field, a hash made with another bot token, and stale data', async () => {
      const cases: Array<[object, string]> = [
        [{ ...widget(5553), hash: 'a'.repeat(64) }, 'WIDGET_SIGNATURE_INVALID'],
        [{ ...widget(5553), id: 5554 }, 'WIDGET_SIGNATURE_INVALID'],
        [{ ...widget(5553), extra: 'added' }, 'WIDGET_SIGNATURE_INVALID'],
        [widget(5553, {}, '999:other-bot-token'), 'WIDGET_SIGNATURE_INVALID'],
        [widget(5553, { auth_date: Math.floor(Date.now() / 1000) - 3600 }), 'WIDGET_EXPIRED'],
      ];
      const { token } = await registerUser(t.app);
      for (const [payload, code] of cases) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/auth/channels/telegram/widget',
          headers: bearer(token),
          payload,
        });
        expect(res.statusCode).toBe(401);
        expect(res.json()).toMatchObject({ error: { code } });
      }
      expect(await t.app.authenticator.authenticateTelegram(5553)).toBeNull();
    });

    it('refuses an unlinked account without a session, and an account linked to someone else', async () => {
      const anon = await t.app.inject({ method: 'POST', url: '/auth/channels/telegram/widget', payload: widget(5560) });
      expect(anon.statusCode).toBe(401);
      expect(anon.json()).toMatchObject({ error: { code: 'CHANNEL_NOT_LINKED' } });

      const owner = await registerUser(t.app);
      const other = await registerUser(t.app);
      await t.app.inject({
        method: 'POST',
        url: '/auth/channels/telegram/widget',
        headers: bearer(owner.token),
        payload: widget(5561),
      });
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/channels/telegram/widget',
        headers: bearer(other.token),
        payload: widget(5561),
      });
      expect(res.statusCode).toBe(409);
      expect(res.json()).toMatchObject({ error: { code: 'CHANNEL_ALREADY_LINKED' } });
    });

    it('refuses a bad bearer rather than signing in by the widget alone', async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/channels/telegram/widget',
        headers: bearer('nope'),
        payload: widget(5562),
      });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error: { code: 'INVALID_TOKEN' } });
    });

    // Regression: a stale session cookie was ignored and the widget signed in as the Telegram account's owner.
    it('refuses a bad session cookie rather than signing in by the widget alone; a device cookie is no credential', async () => {
      const { userId } = await registerUser(t.app);
      await t.db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '8881')`,
        [userId],
      );
      for (const cookie of [
        'better-auth.session_token=stale.value',
        '__Secure-better-auth.session_token=stale.value',
      ]) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/auth/channels/telegram/widget',
          headers: { cookie },
          payload: widget(8881),
        });
        expect(res.statusCode).toBe(401);
        expect(res.json()).toMatchObject({ error: { code: 'INVALID_TOKEN' } });
      }
      const res = await t.app.inject({
        method: 'POST',
        url: '/auth/channels/telegram/widget',
        headers: { cookie: `gateway_device=${'d'.repeat(32)}` },
        payload: widget(8881),
      });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ userId, linked: false, token: expect.any(String) });
    });

    it('answers malformed widget data with 400', async () => {
      for (const payload of [{}, { id: 'x', auth_date: 1, hash: 'zz' }, { ...widget(1), hash: 'g'.repeat(64) }]) {
        const res = await t.app.inject({ method: 'POST', url: '/auth/channels/telegram/widget', payload });
        expect(res.statusCode).toBe(400);
      }
    });
  });
});

/** A webhook-mode bot whose Bot API is `api` (here: a server that never answers). */
function webhookBotOn(api: Server, apiTimeout: number) {
  const { port } = api.address() as AddressInfo;
  return {
    bot_token: TOKEN,
    api_root: `http://127.0.0.1:${port}`,
    mode: 'webhook' as const,
    webhook_secret: 'x'.repeat(32),
    api_timeout: apiTimeout,
  };
}

describe('a link code while the Telegram Bot API does not answer', () => {
  let t: TestApp;
  let silent: Server;
  beforeAll(async () => {
    // Accepts connections and never answers: getMe hangs (grammY itself would wait 500 s).
    silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t = await createTestApp({ config: { telegram: webhookBotOn(silent, 2) } });
  });
  afterAll(async () => {
    await t?.close();
    silent?.closeAllConnections();
    await new Promise((resolve) => silent?.close(resolve));
  });

  it('still answers the code, without a deep link, instead of waiting on the Bot API', async () => {
    const { token } = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ success: true, code: expect.stringMatching(/^[\w-]{22}$/), deepLink: null });
  });

  it('a Bot API call fails after telegram.api_timeout instead of waiting (grammY alone: 500 s)', async () => {
    const started = Date.now();
    await expect(t.app.telegram?.setWebhook('https://gateway.example/telegram/webhook')).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a webhook update that cannot be handled yet is refused with a stable code, for Telegram to deliver again', async () => {
    const update = (id: number) =>
      t.app.inject({
        method: 'POST',
        url: '/telegram/webhook',
        headers: { 'x-telegram-bot-api-secret-token': 'x'.repeat(32) },
        payload: {
          update_id: id,
          message: { message_id: id, date: 0, chat: { id: 5, type: 'private' }, text: '/start' },
        },
      });
    // They wait out telegram.api_timeout (2 s here; 10 s at most) for getMe: grammY alone retries it for as long as it
    // fails.
    for (const res of await Promise.all([update(1), update(2)])) {
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe('TELEGRAM_UNAVAILABLE');
    }
  });
});

describe('shutting down while a webhook update waits on a silent Telegram Bot API', () => {
  let silent: Server;
  beforeAll(async () => {
    silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    silent?.closeAllConnections();
    await new Promise((resolve) => silent?.close(resolve));
  });

  it('the update answers 503 at once and the close does not wait out its 10 s wait for getMe', async () => {
    const t = await createTestApp({ config: { telegram: webhookBotOn(silent, 60) } });
    // Over a real connection (closed after the answer): closing drains in-flight HTTP requests before the onClose
    // hooks run.
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port: gatewayPort } = t.app.server.address() as AddressInfo;
    const pending = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: gatewayPort,
          path: '/telegram/webhook',
          method: 'POST',
          agent: false,
          headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': 'x'.repeat(32) },
        },
        (res) => {
          let body = '';
          res.on('data', (chunk) => {
            body += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(
        JSON.stringify({
          update_id: 1,
          message: { message_id: 1, date: 0, chat: { id: 5, type: 'private' }, text: 'hi' },
        }),
      );
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    await t.close();
    const res = await pending;
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).error.code).toBe('TELEGRAM_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
