import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTelegramBotApi, type TelegramBotApi } from '../../helpers/telegram-bot-api.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const TOKEN = '133456789:AAE-link-guessing-token';

// Regression (review C): link-code guesses from one Telegram account were not limited; each cost a database
// transaction and an audit row.
describe('Telegram linking: wrong codes from one account are limited', () => {
  let api: TelegramBotApi;
  let t: TestApp;

  beforeAll(async () => {
    api = await createTelegramBotApi({ token: TOKEN, maxLongPollMs: 500 });
    t = await createTestApp({ config: { telegram: { bot_token: TOKEN, api_root: api.apiRoot, mode: 'polling' } } });
    await api.waitForPolling(5000);
  });
  afterAll(async () => {
    await t?.close();
    await api?.close();
  });

  const guess = () => `/link ${randomBytes(16).toString('base64url')}`;
  const repliesTo = (from: number) => api.sentMessages.filter((m) => m.chat_id === from).map((m) => m.text);
  const refusals = async (from: number) => {
    const { rows } = await t.db.query<{ reason: string }>(
      `SELECT details->>'reason' AS reason FROM auth_audit_log
        WHERE event = 'channel.link_refused' AND details->>'channelUserId' = $1 ORDER BY id`,
      [String(from)],
    );
    return rows.map((r) => r.reason);
  };
  const linkCode = async () => {
    const { token, email } = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/channels/telegram/link-code',
      headers: { authorization: `Bearer ${token}` },
    });
    return { code: (res.json() as { code: string }).code, email };
  };

  it('past 10 wrong codes in 5 minutes: refused without a lookup, one audit row for the burst', async () => {
    const from = 9601;
    for (let i = 0; i < 25; i++) await api.sendText({ fromId: from, text: guess() });
    await expect.poll(() => repliesTo(from).length, { timeout: 10_000 }).toBe(25);
    const texts = repliesTo(from);
    expect(texts.slice(0, 10).every((x) => x.startsWith('That code is not valid'))).toBe(true);
    expect(texts.slice(10).every((x) => /^Too many wrong codes .* Try again in 5 min/.test(x))).toBe(true);
    expect(await refusals(from)).toEqual([...Array(10).fill('invalid'), 'too_many_attempts']);

    // Even a good code waits for the window to end; another account is not held back.
    const { code, email } = await linkCode();
    await api.sendText({ fromId: from, text: `/link ${code}` });
    await expect.poll(() => repliesTo(from).at(-1), { timeout: 3000 }).toMatch(/^Too many wrong codes/);
    await api.sendText({ fromId: 9602, text: `/link ${code}` });
    expect((await api.waitForMessage((m) => m.chat_id === 9602, 3000)).text).toBe(
      `Linked. This Telegram account now chats as ${email}.`,
    );
  });

  it('a successful link clears the count of wrong codes', async () => {
    const from = 9603;
    for (let i = 0; i < 9; i++) await api.sendText({ fromId: from, text: guess() });
    const { code } = await linkCode();
    await api.sendText({ fromId: from, text: `/link ${code}` });
    await expect.poll(() => repliesTo(from).at(-1), { timeout: 5000 }).toMatch(/^Linked\./);
    await api.sendText({ fromId: from, text: '/unlink' });
    for (let i = 0; i < 9; i++) await api.sendText({ fromId: from, text: guess() });
    await expect.poll(() => repliesTo(from).length, { timeout: 5000 }).toBe(20);
    expect(repliesTo(from).some((x) => x.startsWith('Too many'))).toBe(false);
  });
});
