import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a lone UTF-16 surrogate in an audit detail reached jsonb as "\ud800", which PostgreSQL refuses, and
// record() lost the whole row ("audit write failed"): an OAuth callback's `error` cut by .slice(0, 64) inside an emoji.
describe('audit rows with text that is not well-formed UTF-16', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const lastFailure = async () =>
    (
      await t.db.query<{ details: Record<string, unknown> }>(
        `SELECT details FROM auth_audit_log WHERE event = 'login.failure' ORDER BY id DESC LIMIT 1`,
      )
    ).rows[0]?.details;

  it('writes the login.failure of an OAuth callback whose error is longer than 64 characters and ends in an emoji', async () => {
    const before = t.logs.lines.length;
    const emoji = '\u{1F600}';
    const res = await t.app.inject({
      url: `/auth/oauth/complete?error=${'a'.repeat(63)}${encodeURIComponent(emoji)}b`,
    });
    expect(res.statusCode).toBeLessThan(500);
    // 64 characters kept whole: the emoji is the 64th, not half of it.
    expect(await lastFailure()).toMatchObject({ method: 'oauth', provider_error: `${'a'.repeat(63)}${emoji}` });
    expect(t.logs.lines.slice(before).some((l) => l.includes('audit write failed'))).toBe(false);
  });

  it('stores lone surrogates in detail values, detail keys and the user agent as U+FFFD instead of losing the row', async () => {
    const { userId } = await registerUser(t.app);
    const before = t.logs.lines.length;
    await t.app.audit.record({
      event: 'login.failure',
      userId,
      channel: 'telegram',
      userAgent: `agent\ud800/${'x'.repeat(504)}\u{1F600}`, // the 512-character cut falls inside the emoji
      details: { method: 'telegram', name: 'N\udc00me', nested: { list: ['ok', '\ud83d'], 'k\ud800': 1 } },
    });
    expect(t.logs.lines.slice(before).some((l) => l.includes('audit write failed'))).toBe(false);
    const { rows } = await t.db.query<{ user_agent: string; details: Record<string, unknown> }>(
      `SELECT user_agent, details FROM auth_audit_log WHERE user_id = $1 AND event = 'login.failure'`,
      [userId],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.user_agent).toBe(`agent\uFFFD/${'x'.repeat(504)}\uFFFD`);
    expect(rows[0]?.details).toEqual({
      method: 'telegram',
      name: 'N\uFFFDme',
      nested: { list: ['ok', '\uFFFD'], 'k\uFFFD': 1 },
    });
  });
});
