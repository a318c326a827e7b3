import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settleAfterAnswer } from '../../src/account/deferred.js';
import { startMoodySmtp } from '../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

type Mood = Parameters<typeof startMoodySmtp>[0];

/**
 * For the calling describe: a mail server in `mood` (which the tests may change) and an app sending through it.
 * A test that closes the app itself sets `closed`.
 */
function appMailingThrough(mood: Mood, config: Record<string, unknown> = {}) {
  const ctx = { closed: false } as { smtp: Awaited<ReturnType<typeof startMoodySmtp>>; t: TestApp; closed: boolean };
  beforeAll(async () => {
    ctx.smtp = await startMoodySmtp(mood);
    ctx.t = await createTestApp({ config: { ...config, email: { smtp_url: ctx.smtp.url } } });
  });
  afterAll(async () => {
    if (ctx.closed) await ctx.t?.testDb.drop();
    else await ctx.t?.close();
    await ctx.smtp?.close();
  });
  return ctx;
}

/** How many emails `to` received after the first `since`. */
const receivedBy = (smtp: { received: string[] }, to: string, since = 0) =>
  smtp.received.slice(since).filter((r) => r === to).length;

// Regression (review C): the reset email was sent after the limit's `send` had returned, so a mail server that refused
// it never freed the address's slot: the user, told 202 and sent nothing, asked again and again got nothing for the
// whole resend interval, although the mail server was back.
describe('a reset email the mail server refused', () => {
  const mood: Mood = { refuse: true };
  const m = appMailingThrough(mood);

  it('frees the address to ask again: the next request, once the mail server is back, sends it', async () => {
    const { t } = m;
    const user = await registerUser(t.app);
    const forgot = () => t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email: user.email } });
    const first = await forgot();
    expect(first.statusCode).toBe(202);
    await expect.poll(() => t.logs.text.includes('sending an account email failed'), { timeout: 5000 }).toBe(true);
    // The request's work reports the failure once the slot is free again (before the fix it never did: this waits 2 s).
    for (let i = 0; i < 40 && !t.logs.text.includes('requesting a password reset failed'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }

    mood.refuse = false;
    const again = await forgot();
    // The answer says nothing of the failure: the same status and body as the first.
    expect([again.statusCode, again.body]).toEqual([202, first.body]);
    await expect.poll(() => receivedBy(m.smtp, user.email), { timeout: 5000 }).toBe(1);
  });
});

// Regression (review C): shutdown closed the app and the pool without waiting for the emails sent after the answer:
// a SIGTERM right after a 202 lost the reset email it promised. The mail server greets a second after a connection.
describe('closing the app with a reset email on its way', () => {
  const m = appMailingThrough({ greetAfterMs: 1000 });

  it('sends it before close() resolves', async () => {
    const user = await registerUser(m.t.app);
    const res = await m.t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email: user.email } });
    expect(res.statusCode).toBe(202);
    m.closed = true;
    await m.t.app.close();
    expect(receivedBy(m.smtp, user.email)).toBe(1);
  });
});

// The same for a magic link: its email was an untracked setImmediate, lost when the process stopped right after.
describe('closing the app with a magic link email on its way', () => {
  const m = appMailingThrough({ greetAfterMs: 1000 });

  it('sends it before close() resolves', async () => {
    const user = await registerUser(m.t.app);
    const res = await m.t.app.inject({ method: 'POST', url: '/auth/magic-link', payload: { email: user.email } });
    expect(res.statusCode).toBe(200);
    m.closed = true;
    await m.t.app.close();
    expect(receivedBy(m.smtp, user.email)).toBe(1);
  });
});

// Regression (review E): a verification link resent to a caller signed in to the account was sent after the resend's
// work had returned, so a mail server that refused it never freed the address's slot: 429 for the whole interval.
describe('a resent verification link the mail server refused', () => {
  const mood: Mood = {};
  const m = appMailingThrough(mood);

  it('frees the address to ask again: the next resend, once the mail server is back, sends it', async () => {
    const { t } = m;
    // Verification off (the default): the registrant is signed in to its unverified account.
    const user = await registerUser(t.app);
    // As if resend_interval had passed since the sign-up's email.
    await t.db.query(
      `UPDATE verification_tokens SET expires_at = now() - interval '1 second' WHERE identifier LIKE 'email-verification-sent:%'`,
    );
    const resend = () =>
      t.app.inject({
        method: 'POST',
        url: '/auth/email/verify/resend',
        headers: { authorization: `Bearer ${user.token}` },
        payload: { email: user.email },
      });
    const before = m.smtp.received.length;
    mood.refuse = true;
    expect((await resend()).statusCode).toBe(202);
    await expect.poll(() => t.logs.text.includes('sending an account email failed'), { timeout: 5000 }).toBe(true);
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);

    mood.refuse = false;
    expect((await resend()).statusCode).toBe(202);
    expect(t.logs.text).toContain('resending a verification email failed');
    await expect.poll(() => receivedBy(m.smtp, user.email, before)).toBe(1);
  });
});

// The same for the sign-up's own email (sent with verification required): a refused one held the address's slot for
// the whole resend interval, and a resend was refused (429).
describe('a sign-up whose verification email the mail server refused', () => {
  const mood: Mood = {};
  const m = appMailingThrough(mood, { auth: { require_email_verification: true } });

  it('frees the address: the first resend, once the mail server is back, sends an email', async () => {
    const { t } = m;
    const before = m.smtp.received.length;
    mood.refuse = true;
    const email = `refused-${Date.now()}@example.com`;
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      payload: { email, password: 'SecurePassword123!', name: 'R' },
    });
    expect(res.statusCode).toBe(201);
    await expect.poll(() => t.logs.text.includes('sending an account email failed'), { timeout: 5000 }).toBe(true);
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    mood.refuse = false;
    const resend = await t.app.inject({ method: 'POST', url: '/auth/email/verify/resend', payload: { email } });
    expect(resend.statusCode).toBe(202);
    await expect.poll(() => receivedBy(m.smtp, email, before)).toBe(1);
  });
});
