import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settleAfterAnswer } from '../../../src/account/deferred.js';
import { startMoodySmtp } from '../../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// Regression: a password choice (a resend not signed in to an unverified account) that the mail server refused freed
// the address's resend slot, while an unknown or verified address, for which nothing is mailed, kept it: two resends
// in a row answered 202, 202 for an address with an unverified account and 202, 429 for any other.
describe('/auth/email/verify/resend while the mail server refuses', () => {
  const mood: Parameters<typeof startMoodySmtp>[0] = {};
  let smtp: Awaited<ReturnType<typeof startMoodySmtp>>;
  let t: TestApp;
  beforeAll(async () => {
    smtp = await startMoodySmtp(mood);
    t = await createTestApp({ config: { email: { smtp_url: smtp.url } } });
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  /** A resend of `email`, signed in with `token` (bearer), else not signed in; its after-answer work settled. */
  const resend = async (email: string, token?: string) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
      payload: { email },
    });
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    return res;
  };
  const twice = async (email: string, token?: string) => [
    (await resend(email, token)).statusCode,
    (await resend(email, token)).statusCode,
  ];
  const forgot = async (email: string) => {
    const res = await t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email } });
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    return res;
  };
  /** As if resend_interval had passed since the last email to each address (the sign-ups', once sent, included). */
  const expireSlots = async () => {
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    await t.db.query(
      `UPDATE verification_tokens SET expires_at = now() - interval '1 second'
        WHERE identifier LIKE 'email-verification-sent:%' OR identifier LIKE 'password-reset-sent:%'`,
    );
  };

  it('answers an unverified account, a verified one and an unknown address alike; only the own link frees the slot', async () => {
    // Registered with verification off (the default): unverified, and signed in.
    const unverified = await registerUser(t.app);
    const verified = await registerUser(t.app);
    const other = await registerUser(t.app);
    await t.db.query('UPDATE users SET email_verified = true WHERE id = $1', [verified.userId]);
    await expireSlots();
    mood.refuse = true;
    const failedBefore = t.logs.text.split('resending a verification email failed').length;

    expect({
      unverified: await twice(unverified.email),
      verified: await twice(verified.email),
      unknown: await twice(`nobody-${Date.now()}@example.com`),
      // Signed in, but not to the address's account: the password choice too, and the same answers.
      signedInAsAnother: await twice(other.email, unverified.token),
    }).toEqual({ unverified: [202, 429], verified: [202, 429], unknown: [202, 429], signedInAsAnother: [202, 429] });
    // The refused password choices did fail (and were logged): the slots were kept, not unused.
    expect(t.logs.text.split('resending a verification email failed').length - failedBefore).toBe(2);

    // A caller signed in to the account knows it has one: its refused link frees the slot, it may ask at once.
    const own = await registerUser(t.app);
    await expireSlots();
    expect(await twice(own.email, own.token)).toEqual([202, 202]);
  });

  it('a refused password choice frees the reset limit only, which /auth/password/forgot does not tell', async () => {
    const unverified = await registerUser(t.app);
    const unknown = `nobody-else-${Date.now()}@example.com`;
    await expireSlots();
    mood.refuse = true;
    const answers = [await resend(unverified.email), await resend(unknown)];
    expect(answers.map((r) => r.statusCode)).toEqual([202, 202]);

    mood.refuse = false;
    const before = smtp.received.length;
    // The resend slots stay taken alike; the reset one of the account's address was freed, so a reset is sent now.
    expect([(await resend(unverified.email)).statusCode, (await resend(unknown)).statusCode]).toEqual([429, 429]);
    const [known, none] = [await forgot(unverified.email), await forgot(unknown)];
    expect([known.statusCode, known.body]).toEqual([none.statusCode, none.body]);
    expect(known.statusCode).toBe(202);
    expect(smtp.received.slice(before)).toEqual([unverified.email]);
  });
});
