import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statementsWaitingForALock } from '../../helpers/db-locks.js';
import { startMailingApp } from '../../helpers/mailing-app.js';
import { createSiblingApp } from '../../helpers/sibling-app.js';
import { addressOf, linkIn, type SmtpSink } from '../../helpers/smtp-sink.js';
import { registerUser, type TestApp } from '../../helpers/test-app.js';

describe('password reset by real email', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp());
  });
  afterAll(() => close?.());

  const forgot = (email: string) => t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email } });
  const reset = (token: string, password: string) =>
    t.app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token, password } });
  const login = (email: string, password: string) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });
  const session = (token: string) =>
    t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  /** As if resend_interval had passed since the last reset email to each address. */
  const freeResetSlots = () =>
    t.db.query(`UPDATE verification_tokens SET expires_at = now() WHERE identifier LIKE 'password-reset-sent:%'`);
  /** A reset token's row holds the user id alone (its identifier is hashed). */
  const liveResetTokens = async (userId: string) => {
    const { rows } = await t.db.query('SELECT 1 FROM verification_tokens WHERE token = $1 AND expires_at > now()', [
      userId,
    ]);
    return rows.length;
  };

  /** A reset email's subject ("Choose your ... password" when the account is not verified: registerUser's are not). */
  const RESET_MAIL = /^(Reset|Choose) your .+ password$/;

  async function resetTokenFor(email: string): Promise<string> {
    const before = smtp.messages.length;
    expect((await forgot(email)).statusCode).toBe(202);
    // The reset link's email, not a notice still arriving from an earlier reset of the same address.
    const mail = await smtp.waitFor(
      (m) => addressOf(m) === email && smtp.messages.indexOf(m) >= before && RESET_MAIL.test(m.subject ?? ''),
    );
    expect(mail.html).toContain('href="http://localhost:3000/reset-password?token=');
    const link = linkIn(mail, '/reset-password');
    expect(link.origin).toBe(new URL(t.config.server.base_url).origin);
    return link.searchParams.get('token') ?? '';
  }

  // Pre-hijacked accounts: someone registered the owner's address first and added ways in (here: a channel link and a
  // provider account, as their routes write them). The reset link proves the address, as a magic link does, and the
  // account becomes the owner's alone; the password the owner just set stays.
  it('a reset of an account whose email was not verified reclaims it for the owner, keeping the new password', async () => {
    const registrant = await registerUser(t.app, { password: 'RegistrantKnows123!' });
    await t.db.query(
      `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '5151')`,
      [registrant.userId],
    );
    await t.db.query(
      `INSERT INTO user_credentials (id, user_id, account_id, provider_id) VALUES ('acct_gh_reset', $1, 'gh-reset', 'github')`,
      [registrant.userId],
    );
    const res = await reset(await resetTokenFor(registrant.email), 'OwnersPassword456!');
    expect(res.statusCode).toBe(200);

    expect((await login(registrant.email, 'OwnersPassword456!')).statusCode).toBe(200);
    expect((await login(registrant.email, 'RegistrantKnows123!')).statusCode).toBe(401);
    const left = await t.db.query<Record<string, unknown>>(
      `SELECT u.email_verified,
              (SELECT count(*)::int FROM user_channel_links WHERE user_id = u.id) AS channel_links,
              array(SELECT provider_id FROM user_credentials WHERE user_id = u.id) AS providers
         FROM users u WHERE u.id = $1`,
      [registrant.userId],
    );
    expect(left.rows[0]).toEqual({ email_verified: true, channel_links: 0, providers: ['credential'] });
    const { rows: events } = await t.db.query<{ details: { method: string; removed: Record<string, number> } }>(
      `SELECT details FROM auth_audit_log WHERE user_id = $1 AND event = 'account.reclaimed'`,
      [registrant.userId],
    );
    expect(events).toHaveLength(1);
    expect(events[0]?.details.method).toBe('password_reset');
    expect(events[0]?.details.removed).toMatchObject({ password: 0, oauthAccounts: 1, channelLinks: 1 });

    // Verified now: a later reset is the owner's own and removes nothing.
    await freeResetSlots();
    expect((await reset(await resetTokenFor(registrant.email), 'OwnersPassword789!')).statusCode).toBe(200);
    const again = await t.db.query(`SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'account.reclaimed'`, [
      registrant.userId,
    ]);
    expect(again.rows).toHaveLength(1);
  });

  it('answers the same for a known and an unknown address, and mails only the known one', async () => {
    const user = await registerUser(t.app);
    const known = await forgot(user.email);
    const unknown = await forgot('nobody-here@example.com');
    expect(known.statusCode).toBe(unknown.statusCode);
    expect(known.json()).toEqual(unknown.json());
    await smtp.waitFor((m) => addressOf(m) === user.email);
    // Spellings of the known address behave like it (and still answer the same).
    expect((await forgot(`  ${user.email.toUpperCase()} `)).json()).toEqual(unknown.json());
    expect(smtp.messages.some((m) => addressOf(m) === 'nobody-here@example.com')).toBe(false);
  });

  // Regression: the registrant's name opened the email's text ("Hello <name>,"), so whoever registered someone else's
  // address first wrote the opening lines of a genuine reset email sent to that address.
  it('the reset email carries nothing the registrant wrote', async () => {
    const name = 'Alice,\n\nSECURITY ALERT: confirm your identity at https://evil.example/reset\n\nThanks';
    const user = await registerUser(t.app, { name });
    expect((await forgot(user.email)).statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => addressOf(m) === user.email && RESET_MAIL.test(m.subject ?? ''));
    for (const body of [mail.text ?? '', mail.html || '']) {
      expect(body).not.toContain('evil.example');
      expect(body).not.toContain('SECURITY ALERT');
      expect(body).not.toContain('Alice');
    }
    expect(mail.text?.startsWith('Hello,\n')).toBe(true);
  });

  // Regression: a known address was answered only after Better Auth had written its reset token (and whatever else it
  // awaits for one), an unknown one sooner (14.1 ms against 9.5 ms, median). Held here: with the tables an address is
  // looked up in locked against every statement, a known and an unknown address are both answered, so neither answer
  // runs a statement on them; the known one's reset goes ahead once the lock is released.
  it.skipIf(!process.env.TEST_DATABASE_URL)('answers before it looks the address up', async () => {
    const user = await registerUser(t.app);
    const before = smtp.messages.length;
    await t.db.transaction(async (tx) => {
      await tx.query('LOCK TABLE users, user_credentials, verification_tokens IN ACCESS EXCLUSIVE MODE');
      // Each answer arrives before its request's work waits for the lock (then that work waits: it is under way).
      for (const [i, email] of ['nobody-at-all@example.com', user.email].entries()) {
        const answer = forgot(email).then((r) => r.statusCode);
        expect(await Promise.race([answer, statementsWaitingForALock(t.db, i + 1)])).toBe(202);
        await statementsWaitingForALock(t.db, i + 1);
      }
    });
    const mail = await smtp.waitFor(
      (m) => addressOf(m) === user.email && smtp.messages.indexOf(m) >= before && RESET_MAIL.test(m.subject ?? ''),
    );
    const token = linkIn(mail, '/reset-password').searchParams.get('token') ?? '';
    expect((await reset(token, 'BrandNewPassword456!')).statusCode).toBe(200);
    expect(smtp.messages.some((m) => addressOf(m) === 'nobody-at-all@example.com')).toBe(false);
  });

  // Regression: only the per-IP rule limited forgot, so 30 requests from 30 IPs sent 30 reset emails to one inbox,
  // each with a live reset link.
  it('one reset email per address per resend interval, whoever asks; past it the same answer and nothing sent', async () => {
    const user = await registerUser(t.app);
    let ip = 0;
    const ask = (email: string) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/password/forgot',
        payload: { email },
        remoteAddress: `198.51.100.${++ip}`,
      });
    const unknown = await ask('nobody-flooded@example.com');
    const before = smtp.messages.length;
    const burst = await Promise.all(Array.from({ length: 30 }, () => ask(user.email)));
    // An unknown address past its limit: the same answer as every other.
    const unknownAgain = await ask('nobody-flooded@example.com');
    for (const res of [...burst, unknownAgain]) {
      expect(res.statusCode).toBe(202);
      expect(res.json()).toEqual(unknown.json());
    }
    // A later address's reset email: the burst's own work, started before it, is done by then.
    const sentinel = await registerUser(t.app);
    expect((await ask(sentinel.email)).statusCode).toBe(202);
    await smtp.waitFor((m) => addressOf(m) === sentinel.email && smtp.messages.indexOf(m) >= before);
    const resets = () =>
      smtp.messages.filter(
        (m) => addressOf(m) === user.email && smtp.messages.indexOf(m) >= before && RESET_MAIL.test(m.subject ?? ''),
      );
    expect(resets()).toHaveLength(1);
    expect(await liveResetTokens(user.userId)).toBe(1);
    expect(smtp.messages.some((m) => addressOf(m) === 'nobody-flooded@example.com')).toBe(false);

    // Once the interval has passed, the address gets a reset email again.
    await freeResetSlots();
    expect((await ask(user.email)).statusCode).toBe(202);
    await expect.poll(() => resets().length).toBe(2);
  });

  // The limit is checked after the answer, as the account is: an address past it is answered as soon as any other.
  it.skipIf(!process.env.TEST_DATABASE_URL)(
    'answers an address past the limit before it checks the limit',
    async () => {
      const user = await registerUser(t.app);
      await resetTokenFor(user.email);
      await t.db.transaction(async (tx) => {
        await tx.query('LOCK TABLE verification_tokens IN ACCESS EXCLUSIVE MODE');
        const answer = forgot(user.email).then((r) => r.statusCode);
        expect(await Promise.race([answer, statementsWaitingForALock(t.db, 1)])).toBe(202);
        await statementsWaitingForALock(t.db, 1);
      });
    },
  );

  // Regression (review): base_url lost its trailing slash at load, so a relative page "reset-password" under
  // "https://example.com/app/" resolved to https://example.com/reset-password, outside the front end.
  it('a relative reset page resolves under base_url and its path prefix', async () => {
    const app = await createSiblingApp(t, {
      server: { base_url: 'http://localhost:3000/app' }, // as loaded: without its trailing slash
      auth: { password_reset_page: 'reset-password' },
      email: { smtp_url: smtp.url },
    });
    try {
      const user = await registerUser(app, { email: 'prefixed.reset@example.com' });
      const asked = await app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email: user.email } });
      expect(asked.statusCode).toBe(202);
      const mail = await smtp.waitFor((m) => addressOf(m) === user.email && RESET_MAIL.test(m.subject ?? ''));
      expect(linkIn(mail, 'reset-password').pathname).toBe('/app/reset-password');
    } finally {
      await app.close();
    }
  });

  it("a reset that fails after the answer is logged, without the address's token", async () => {
    const user = await registerUser(t.app);
    // A reset token's row holds the user id alone.
    await t.db.query(
      `ALTER TABLE verification_tokens ADD CONSTRAINT fail_resets CHECK (token <> '${user.userId}') NOT VALID`,
    );
    try {
      expect((await forgot(user.email)).statusCode).toBe(202);
      await expect.poll(() => t.logs.text).toContain('requesting a password reset failed');
    } finally {
      await t.db.query('ALTER TABLE verification_tokens DROP CONSTRAINT fail_resets');
    }
    const line = t.logs.lines.find((l) => l.includes('requesting a password reset failed')) ?? '';
    expect(JSON.parse(line).err.message).toContain('fail_resets');
    expect(line).not.toContain(user.email);
    expect((await forgot(user.email)).statusCode).toBe(202); // the gateway carries on
  });

  it('stores only a hash of the token', async () => {
    const user = await registerUser(t.app);
    const token = await resetTokenFor(user.email);
    const { rows } = await t.db.query<{ identifier: string }>('SELECT identifier FROM verification_tokens');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.some((r) => r.identifier.includes(token))).toBe(false);
  });

  it('follows the link: sets the new password, ends every session (old token 401), works once', async () => {
    const user = await registerUser(t.app);
    const second = (await login(user.email, user.password)).json().token as string;
    const token = await resetTokenFor(user.email);
    // What closes sockets in every process: the session-ended event, fed by the sessions trigger.
    const ended: string[] = [];
    const off = t.app.sessionEvents.onSessionEnded((e) => {
      if (e.userId === user.userId) ended.push(e.sessionId);
    });

    const res = await reset(token, 'BrandNewPassword456!');
    expect(res.statusCode).toBe(200);
    expect(res.json().success).toBe(true);
    await expect.poll(() => ended.length).toBe(2);
    off();

    for (const old of [user.token, second]) {
      const s = await session(old);
      expect(s.statusCode).toBe(401);
      expect(s.json().error.code).toBe('INVALID_TOKEN');
    }
    expect((await login(user.email, user.password)).statusCode).toBe(401);
    expect((await login(user.email, 'BrandNewPassword456!')).statusCode).toBe(200);

    const again = await reset(token, 'YetAnotherPassword789!');
    expect(again.statusCode).toBe(400);
    expect(again.json().error.code).toBe('INVALID_RESET_TOKEN');

    const { rows } = await t.db.query<{ event: string }>(
      'SELECT event FROM auth_audit_log WHERE user_id = $1 ORDER BY id',
      [user.userId],
    );
    const events = rows.map((r) => r.event);
    expect(events).toContain('password.reset_requested');
    expect(events).toContain('password.reset_completed');
    // The owner is told their password changed.
    await smtp.waitFor((m) => addressOf(m) === user.email && /password was changed/.test(m.subject ?? ''));
  });

  it('refuses an expired link', async () => {
    const user = await registerUser(t.app);
    const token = await resetTokenFor(user.email);
    await t.db.query(`UPDATE verification_tokens SET expires_at = now() - interval '1 second'`);
    const res = await reset(token, 'BrandNewPassword456!');
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('INVALID_RESET_TOKEN');
    expect((await login(user.email, user.password)).statusCode).toBe(200);
  });

  it('refuses junk tokens and short passwords with 400 JSON', async () => {
    const bad = await reset('not a token!', 'BrandNewPassword456!');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('VALIDATION_FAILED');
    const unknown = await reset('a'.repeat(24), 'BrandNewPassword456!');
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error.code).toBe('INVALID_RESET_TOKEN');
    const short = await reset('a'.repeat(24), 'short');
    expect(short.statusCode).toBe(400);
    expect(short.json().error.field).toBe('password');
  });
});
