import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settleAfterAnswer } from '../../../src/account/deferred.js';
import { statementsWaitingForALock } from '../../helpers/db-locks.js';
import { startMailingApp } from '../../helpers/mailing-app.js';
import { createSiblingApp } from '../../helpers/sibling-app.js';
import { addressOf, linkIn, openEmailedLink, type ReceivedMail, type SmtpSink } from '../../helpers/smtp-sink.js';
import type { TestApp } from '../../helpers/test-app.js';

describe('email verification (auth.require_email_verification: true)', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp({ auth: { require_email_verification: true } }));
  });
  afterAll(() => close?.());

  let n = 0;
  const fresh = () => ({ email: `verify${++n}-${Date.now()}@example.com`, password: 'SecurePassword123!' });
  const register = (user: { email: string; password: string }) =>
    t.app.inject({ method: 'POST', url: '/auth/register', payload: { ...user, name: 'Vera <b>' } });
  const login = (user: { email: string; password: string }) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: user });
  /** A resend, signed in to an account with `token` (bearer), else not signed in. */
  const resend = (email: string, token?: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
      payload: { email },
    });
  const mailsTo = (email: string) => smtp.messages.filter((m) => addressOf(m) === email);
  /**
   * As if resend_interval had passed since the last email to each address: the verification emails' slots, and (but
   * for `only: 'verification'`) the reset emails', which a resend not signed in to the account takes too.
   */
  const expireSlots = (only?: 'verification') =>
    t.db.query(
      `UPDATE verification_tokens SET expires_at = now() - interval '1 second'
        WHERE identifier LIKE 'email-verification-sent:%' OR ($1::boolean AND identifier LIKE 'password-reset-sent:%')`,
      [only !== 'verification'],
    );
  /** The answer to a resend not signed in to the account: a reset link that confirms the address. */
  const CONFIRM = /^Choose your .+ password$/;
  /** The reset token of a "Choose your ... password" email (an unverified account's reset). */
  const confirmToken = (mail: ReceivedMail) => {
    expect(mail.subject).toMatch(CONFIRM);
    expect(mail.text).not.toContain('/auth/email/verify');
    return linkIn(mail, '/reset-password').searchParams.get('token');
  };
  const resetPassword = (token: string | null, password: string) =>
    t.app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token, password } });
  /**
   * A session of an unverified account, which this app does not sign in: signed in on a sibling gateway (same
   * database) with verification off. Its token works here too.
   */
  const sessionOf = async (user: { email: string; password: string }) => {
    const sibling = await createSiblingApp(t, { auth: { require_email_verification: false } });
    try {
      const res = await sibling.inject({ method: 'POST', url: '/auth/login', payload: user });
      expect(res.statusCode).toBe(200);
      return res.json().token as string;
    } finally {
      await sibling.close();
    }
  };
  /** The user's audit rows of these events, oldest first. */
  const eventsOf = async (userId: string, ...events: string[]) =>
    (
      await t.db.query<{ event: string; ip: string | null; user_agent: string | null }>(
        `SELECT event, ip_address AS ip, user_agent FROM auth_audit_log WHERE user_id = $1 AND event = ANY($2) ORDER BY id`,
        [userId, events],
      )
    ).rows;
  /** Live reset links of a user (a reset link's row holds the user id alone). */
  const resetLinks = async (userId: string) =>
    (await t.db.query('SELECT 1 FROM verification_tokens WHERE token = $1 AND expires_at > now()', [userId])).rows
      .length;

  it('register answers 201 without a token; the email arrives over SMTP; login is 403 until the link is followed', async () => {
    const user = fresh();
    const res = await register(user);
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({ success: true, userId: expect.any(String), verificationRequired: true });
    const { rows: sessions } = await t.db.query('SELECT 1 FROM sessions');
    expect(sessions).toHaveLength(0);

    const denied = await login(user);
    expect(denied.statusCode).toBe(403);
    expect(denied.json().error.code).toBe('EMAIL_NOT_VERIFIED');
    // Better Auth's own sign-in refuses the same way.
    const ba = await t.app.inject({ method: 'POST', url: '/api/auth/sign-in/email', payload: user });
    expect(ba.statusCode).toBe(403);
    expect(ba.json().code).toBe('EMAIL_NOT_VERIFIED');
    // A wrong password is still 401: the 403 says nothing to someone without the password.
    expect((await login({ ...user, password: 'WrongPassword123!' })).statusCode).toBe(401);

    const mail = await smtp.waitFor((m) => addressOf(m) === user.email);
    expect(mail.subject).toMatch(/Verify your email/);
    expect(mail.text?.startsWith('Hello,\n')).toBe(true); // no name: see 'carries nothing the registrant wrote'
    const link = linkIn(mail, '/auth/email/verify');
    expect(link.origin).toBe(new URL(t.config.server.base_url).origin);

    // Regression: a GET verified, so a mail filter that fetches every link (Safe Links) proved the address for
    // whoever had registered it. The GET is a page with a button; the button verifies.
    const page = await t.app.inject({ url: `${link.pathname}${link.search}`, headers: { 'user-agent': 'SafeLinks' } });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("form-action 'self'");
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.body).toContain(`value="${link.searchParams.get('token')}"`);
    expect((await login(user)).statusCode).toBe(403);

    const follow = await openEmailedLink(t.app, link);
    expect(follow.statusCode).toBe(200);
    expect(follow.body).toContain('Your email address is verified; you can sign in.');
    expect((await login(user)).statusCode).toBe(200);

    // The link works once: its page still opens, its button says why it cannot be used.
    const again = await openEmailedLink(t.app, link);
    expect(again.statusCode).toBe(400);
    expect(again.body).toContain('This link cannot be used');
    const json = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify',
      payload: { token: link.searchParams.get('token') },
    });
    expect(json.json().error.code).toBe('INVALID_VERIFICATION_TOKEN');

    const { rows } = await t.db.query<{ event: string }>(
      `SELECT event FROM auth_audit_log WHERE user_id = $1 AND event = 'email.verified'`,
      [res.json().userId],
    );
    expect(rows).toHaveLength(1);
  });

  it('an expired link is refused and does not verify', async () => {
    const user = fresh();
    await register(user);
    const link = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    await t.db.query(
      `UPDATE verification_tokens SET expires_at = now() - interval '1 second' WHERE identifier LIKE 'email-verification:%'`,
    );
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify',
      payload: { token: link.searchParams.get('token') },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('INVALID_VERIFICATION_TOKEN');
    expect((await login(user)).statusCode).toBe(403);
  });

  it('a link issued before links carried their address verifies the account it names', async () => {
    const user = fresh();
    const id = (await register(user)).json().userId;
    const link = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    await t.db.query(
      `UPDATE verification_tokens SET token = $1 WHERE identifier LIKE 'email-verification:%' AND token LIKE $2`,
      [id, `${id}\n%`],
    );
    expect((await openEmailedLink(t.app, link)).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
  });

  it('parallel opens of one link: one verifies, the rest are refused', async () => {
    const user = fresh();
    await register(user);
    const token = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify').searchParams.get(
      'token',
    );
    const results = await Promise.all(
      Array.from({ length: 10 }, () => t.app.inject({ method: 'POST', url: '/auth/email/verify', payload: { token } })),
    );
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
  });

  // Regression (pre-hijacked account): a resend sent a plain link to anyone naming the address, so the address's owner
  // pressing "resend" verified the account someone else had registered with it, the registrant's password and all.
  // Only a caller signed in to the account gets one now; anyone else gets a link to confirm the address by choosing a
  // password (a reset, which reclaims the account).
  it('resend: not signed in, a link to choose a password; signed in, a new link replaces the old one; limited per address, same answer for unknown addresses', async () => {
    const user = fresh();
    const userId = (await register(user)).json().userId as string;
    const first = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    // The sign-up email took this address's slot: an immediate resend waits out the interval.
    const early = await resend(user.email);
    expect(early.statusCode).toBe(429);
    expect(Number(early.headers['retry-after'])).toBeLessThanOrEqual(t.config.auth.email_verification_resend_interval);
    // Better Auth's own resend route, which sent a plain link to anyone, is not served.
    const links = () =>
      t.db.query<{ identifier: string }>(
        `SELECT identifier FROM verification_tokens WHERE identifier LIKE 'email-verification:%'`,
      );
    const before = (await links()).rows;
    const ba = await t.app.inject({
      method: 'POST',
      url: '/api/auth/send-verification-email',
      payload: { email: user.email },
    });
    expect(ba.statusCode).toBe(404);
    expect(ba.json().error.code).toBe('NOT_FOUND');
    await expireSlots(); // the interval has passed

    // Not signed in: the same answer as for an unknown address, and the email confirms the address by a reset.
    const ok = await resend(user.email.toUpperCase());
    expect(ok.statusCode).toBe(202);
    const unknown = await resend('nobody-at-all@example.com');
    expect(unknown.statusCode).toBe(202);
    expect(unknown.json()).toEqual(ok.json());
    expect(
      confirmToken(await smtp.waitFor((m) => addressOf(m) === user.email && CONFIRM.test(m.subject ?? ''))),
    ).toEqual(expect.any(String));
    expect((await links()).rows).toEqual(before); // no new verification link: the sign-up's is not replaced
    expect(await resetLinks(userId)).toBe(1);

    // Within the interval: 429 with Retry-After, for the known address and the unknown one alike.
    for (const email of [user.email, 'nobody-at-all@example.com']) {
      const limited = await resend(email);
      expect(limited.statusCode).toBe(429);
      expect(limited.json().error.code).toBe('RATE_LIMITED');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    }
    // Parallel resends cannot slip past the limit.
    await expireSlots();
    const burst = await Promise.all(Array.from({ length: 10 }, () => resend(user.email)));
    expect(burst.filter((r) => r.statusCode === 202)).toHaveLength(1);
    await smtp.waitFor(() => mailsTo(user.email).filter((m) => CONFIRM.test(m.subject ?? '')).length === 2);
    expect(await resetLinks(userId)).toBe(2);

    // The reset email's own limit per address holds too: with only the resend's slot free, the resend answers as
    // always, and no reset link is issued nor recorded (a reset email went out twice, so two rows).
    await expireSlots('verification');
    expect((await resend(user.email)).statusCode).toBe(202);
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    expect(await eventsOf(userId, 'password.reset_requested', 'email.verification_sent')).toEqual([
      { event: 'password.reset_requested', ip: null, user_agent: null },
      { event: 'password.reset_requested', ip: null, user_agent: null },
    ]);
    expect(await resetLinks(userId)).toBe(2);
    expect(mailsTo(user.email).filter((m) => CONFIRM.test(m.subject ?? ''))).toHaveLength(2);
    expect(mailsTo('nobody-at-all@example.com')).toHaveLength(0);

    // Signed in to the account (its registrant's session): a new plain link, which replaces the old one.
    const token = await sessionOf(user);
    await expireSlots();
    expect((await resend(user.email, token)).statusCode).toBe(202);
    const plain = await smtp.waitFor(
      (m) =>
        addressOf(m) === user.email &&
        /Verify your email/.test(m.subject ?? '') &&
        !m.text?.includes(first.searchParams.get('token') ?? ''),
    );
    const second = linkIn(plain, '/auth/email/verify');
    expect(second.searchParams.get('token')).not.toBe(first.searchParams.get('token'));
    expect((await links()).rows).toHaveLength(before.length);
    // Signed in, the limit is the same.
    expect((await resend(user.email, token)).statusCode).toBe(429);

    // The old link is dead; the newest one works.
    const old = await openEmailedLink(t.app, first);
    expect(old.statusCode).toBe(400);
    expect((await openEmailedLink(t.app, second)).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
  });

  // Regression (review E): a resend not signed in to the account was recorded on it as email.verification_sent with
  // the caller's IP and user agent, so a registrant squatting an address read in its audit log where its owner was.
  it("a resend not signed in to the account is recorded as the reset it is, without the caller's IP or user agent", async () => {
    const user = fresh();
    const userId = (await register(user)).json().userId as string;
    await smtp.waitFor((m) => addressOf(m) === user.email);
    await expireSlots();
    const owner = { remoteAddress: '198.51.100.77', headers: { 'user-agent': 'OwnersPhone/1.0 (victim)' } };
    const before = smtp.messages.length;
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      ...owner,
      payload: { email: user.email },
    });
    expect(res.statusCode).toBe(202);
    await smtp.waitFor((m) => smtp.messages.indexOf(m) >= before && CONFIRM.test(m.subject ?? ''));
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    // What the registrant reads in GET /auth/audit (signed in elsewhere: this app does not sign an unverified user in).
    const audit = await t.app.inject({
      url: '/auth/audit?limit=100',
      headers: { authorization: `Bearer ${await sessionOf(user)}` },
    });
    const events = audit.json().events as Array<{ event: string; ip: string | null; userAgent: string | null }>;
    expect(events.filter((e) => e.ip === owner.remoteAddress || e.userAgent?.includes('victim'))).toEqual([]);
    expect(await eventsOf(userId, 'password.reset_requested', 'email.verification_sent')).toEqual([
      { event: 'password.reset_requested', ip: null, user_agent: null },
    ]);

    // Signed in to the account, the caller gets a verification link to it, recorded with where the caller is.
    await expireSlots();
    const signedIn = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      remoteAddress: '192.0.2.5',
      headers: { authorization: `Bearer ${await sessionOf(user)}`, 'user-agent': 'RegistrantsLaptop/2.0' },
      payload: { email: user.email },
    });
    expect(signedIn.statusCode).toBe(202);
    expect(await settleAfterAnswer(Date.now() + 5000)).toBe(true);
    expect(await eventsOf(userId, 'email.verification_sent')).toEqual([
      { event: 'email.verification_sent', ip: '192.0.2.5', user_agent: 'RegistrantsLaptop/2.0' },
    ]);
  });

  it('a duplicate registration answers like a new one (no enumeration) and creates nothing', async () => {
    const user = fresh();
    const a = await register(user);
    const b = await register(user);
    expect(b.statusCode).toBe(a.statusCode);
    expect(Object.keys(b.json()).sort()).toEqual(Object.keys(a.json()).sort());
    const { rows } = await t.db.query('SELECT 1 FROM users WHERE email = $1', [user.email]);
    expect(rows).toHaveLength(1);
  });

  const anonymous = async () => {
    const res = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    expect(res.statusCode).toBe(201);
    return res.json() as { userId: string; token: string };
  };
  const upgrade = (token: string, user: { email: string; password: string }, name = 'Ana') =>
    t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${token}` },
      payload: { ...user, name },
    });
  const sessionUser = async (token: string) =>
    (await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } })).json().user as {
      id: string;
      email: string;
      name: string;
    };
  const userRow = async (id: string) =>
    (
      await t.db.query<{ email: string; is_anonymous: boolean; email_verified: boolean }>(
        'SELECT email, is_anonymous, email_verified FROM users WHERE id = $1',
        [id],
      )
    ).rows[0];
  const follow = (link: URL) => openEmailedLink(t.app, link);
  /** The link's token posted as JSON, as a front end's own verification page does: the answer carries the code. */
  const postToken = (link: URL) =>
    t.app.inject({ method: 'POST', url: '/auth/email/verify', payload: { token: link.searchParams.get('token') } });
  const NOTICE = /^You already have an account with /;

  it('an anonymous upgrade waits for the link: the user stays anonymous until then, and keeps its id and session', async () => {
    const anon = await anonymous();
    const user = fresh();
    const upgraded = await upgrade(anon.token, user);
    expect(upgraded.statusCode).toBe(201);
    expect(upgraded.json()).toEqual({ success: true, userId: anon.userId, token: expect.any(String) });
    // Nothing changes before the address is proven: same session, same anonymous user, no account has the address.
    expect((await sessionUser(upgraded.json().token)).email).toMatch(/@anonymous\.invalid$/);
    expect((await userRow(anon.userId))?.is_anonymous).toBe(true);
    expect((await login(user)).json().error.code).toBe('INVALID_CREDENTIALS');

    const link = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    expect((await follow(link)).statusCode).toBe(200);
    expect(await sessionUser(anon.token)).toEqual({ id: anon.userId, email: user.email, name: 'Ana' });
    expect(await userRow(anon.userId)).toEqual({ email: user.email, is_anonymous: false, email_verified: true });
    const signedIn = await login(user);
    expect(signedIn.statusCode).toBe(200);
    expect(signedIn.json().userId).toBe(anon.userId);
  });

  // Regression: the upgrade was an exact oracle. A taken address (any case) answered 409 EMAIL_TAKEN, a new one 201,
  // and the anonymous token stayed reusable after each hit, so one token tested any number of addresses.
  it('an anonymous upgrade to a taken address answers as one to a new address; the owner gets a notice', async () => {
    const owner = fresh();
    await register(owner);
    await follow(linkIn(await smtp.waitFor((m) => addressOf(m) === owner.email), '/auth/email/verify'));
    await expireSlots(); // the owner's sign-up email took the address's slot
    const prober = await anonymous();
    const control = await anonymous();
    const newcomer = fresh();

    const taken = await upgrade(prober.token, { ...owner, email: owner.email.toUpperCase() }, 'Mallory <i>');
    const free = await upgrade(control.token, newcomer, 'Mallory <i>');
    expect(taken.statusCode).toBe(201);
    expect(taken.statusCode).toBe(free.statusCode);
    expect(Object.keys(taken.json()).sort()).toEqual(Object.keys(free.json()).sort());
    expect(taken.json()).toEqual({ success: true, userId: prober.userId, token: expect.any(String) });
    // Neither the session nor a second attempt tells them apart: both users are still anonymous, as they were.
    for (const anon of [prober, control]) {
      expect((await sessionUser(anon.token)).email).toMatch(/@anonymous\.invalid$/);
      expect((await userRow(anon.userId))?.is_anonymous).toBe(true);
    }
    const again = await upgrade(prober.token, fresh());
    expect(again.statusCode).toBe(201);

    // The owner hears of the attempt: no link, nothing the requester wrote; the account is unchanged.
    const notice = await smtp.waitFor((m) => addressOf(m) === owner.email && NOTICE.test(m.subject ?? ''));
    expect(notice.text?.startsWith('Hello,\n')).toBe(true);
    expect(notice.text).not.toContain('Mallory');
    expect(notice.text).not.toMatch(/https?:\/\//);
    expect(mailsTo(owner.email).filter((m) => /Verify/.test(m.subject ?? ''))).toHaveLength(1); // the sign-up's only
    expect((await login(owner)).statusCode).toBe(200);
    const { rows } = await t.db.query('SELECT 1 FROM user_credentials WHERE user_id = $1', [prober.userId]);
    expect(rows).toHaveLength(0);
    // The new address got its link, as a sign-up would.
    linkIn(await smtp.waitFor((m) => addressOf(m) === newcomer.email), '/auth/email/verify');
  });

  it('only the link for the latest address asked for completes the upgrade', async () => {
    const anon = await anonymous();
    const first = fresh();
    const second = fresh();
    await upgrade(anon.token, first);
    const firstLink = linkIn(await smtp.waitFor((m) => addressOf(m) === first.email), '/auth/email/verify');
    await upgrade(anon.token, second);
    const secondLink = linkIn(await smtp.waitFor((m) => addressOf(m) === second.email), '/auth/email/verify');

    const stale = await postToken(firstLink);
    expect(stale.statusCode).toBe(400);
    expect(stale.json().error.code).toBe('INVALID_VERIFICATION_TOKEN');
    expect((await userRow(anon.userId))?.is_anonymous).toBe(true);
    expect((await follow(secondLink)).statusCode).toBe(200);
    expect((await userRow(anon.userId))?.email).toBe(second.email);
  });

  it('an upgrade link whose address got an account meanwhile: 409 EMAIL_TAKEN, the user stays anonymous', async () => {
    const anon = await anonymous();
    const user = fresh();
    await upgrade(anon.token, user);
    const link = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    expect((await register(user)).statusCode).toBe(201);
    const res = await postToken(link);
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('EMAIL_TAKEN');
    expect((await userRow(anon.userId))?.is_anonymous).toBe(true);
  });

  it('a sign-up for the address of a verified account sends its owner a notice, not a link', async () => {
    const owner = fresh();
    await register(owner);
    await follow(linkIn(await smtp.waitFor((m) => addressOf(m) === owner.email), '/auth/email/verify'));
    await expireSlots();
    const again = await register({ ...owner, password: 'AnotherPassword123!' });
    expect(again.statusCode).toBe(201);
    const notice = await smtp.waitFor((m) => addressOf(m) === owner.email && NOTICE.test(m.subject ?? ''));
    expect(notice.text).not.toMatch(/https?:\/\//);
    expect((await login(owner)).statusCode).toBe(200);
  });

  // Regression (pre-hijacked account): a sign-up for an address whose account was not verified yet sent a fresh
  // verification link. The address's owner, signing up after someone had registered it, followed that link and so
  // verified the registrant's account, the registrant's password and all; a later reset no longer reclaimed it.
  it('a sign-up for the address of an unverified account sends a notice, not a link; a reset reclaims the account', async () => {
    const registrant = fresh();
    await register(registrant);
    await smtp.waitFor((m) => addressOf(m) === registrant.email && /Verify/.test(m.subject ?? ''));
    await expireSlots();
    const owner = { ...registrant, password: 'OwnersOwnPassword123!' };
    expect((await register(owner)).statusCode).toBe(201);

    const notice = await smtp.waitFor((m) => addressOf(m) === owner.email && NOTICE.test(m.subject ?? ''));
    expect(notice.text).not.toMatch(/https?:\/\//);
    expect(mailsTo(owner.email).filter((m) => /Verify/.test(m.subject ?? ''))).toHaveLength(1); // the registrant's
    const { rows } = await t.db.query<{ email_verified: boolean }>(
      'SELECT email_verified FROM users WHERE email = $1',
      [owner.email],
    );
    expect(rows[0]?.email_verified).toBe(false);

    // The owner's way in is the reset the notice points to: it proves the address and reclaims the account. The
    // account is not verified, so its email asks to confirm the address (and choose a password), not to reset one.
    const before = smtp.messages.length;
    await t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email: owner.email } });
    const mail = await smtp.waitFor(
      (m) => addressOf(m) === owner.email && smtp.messages.indexOf(m) >= before && CONFIRM.test(m.subject ?? ''),
    );
    expect(mail.subject).toBe(`Choose your ${t.config.email.app_name} password`);
    const reset = await resetPassword(confirmToken(mail), 'OwnersNewPassword123!');
    expect(reset.statusCode).toBe(200);
    expect((await login({ email: owner.email, password: 'OwnersNewPassword123!' })).statusCode).toBe(200);
    expect((await login(registrant)).json().error.code).toBe('INVALID_CREDENTIALS');
    const reclaimed = await t.db.query(
      `SELECT 1 FROM auth_audit_log a JOIN users u ON u.id = a.user_id
        WHERE u.email = $1 AND a.event = 'account.reclaimed'`,
      [owner.email],
    );
    expect(reclaimed.rows).toHaveLength(1);
  });

  // Regression (pre-hijacked account, by resend): the owner who signs up after a registrant gets a notice, then presses
  // "resend". It sent a plain link, and following it verified the registrant's account, the registrant's password and
  // all (a later reset no longer reclaimed it). Not signed in, the resend now sends a link to confirm the address by
  // choosing a password: the owner's password replaces the registrant's, and the account is reclaimed.
  it("a resend for an address someone else registered confirms it by the owner's own password and reclaims the account", async () => {
    const email = `prehijack-${Date.now()}@example.com`;
    const attacker = { email, password: 'AttackerPassword123!' };
    const owner = { email, password: 'OwnersOwnPassword123!' };
    expect((await register(attacker)).statusCode).toBe(201);
    await smtp.waitFor((m) => addressOf(m) === email && /Verify/.test(m.subject ?? ''));
    await expireSlots();
    expect((await register(owner)).statusCode).toBe(201);
    await smtp.waitFor((m) => addressOf(m) === email && NOTICE.test(m.subject ?? ''));
    await expireSlots();

    const before = smtp.messages.length;
    expect((await resend(email)).statusCode).toBe(202);
    const mail = await smtp.waitFor(
      (m) => addressOf(m) === email && smtp.messages.indexOf(m) >= before && CONFIRM.test(m.subject ?? ''),
    );
    expect(mailsTo(email).filter((m) => /Verify/.test(m.subject ?? ''))).toHaveLength(1); // the attacker's sign-up's
    expect((await resetPassword(confirmToken(mail), owner.password)).statusCode).toBe(200);

    const { rows } = await t.db.query<{ id: string; email_verified: boolean }>(
      'SELECT id, email_verified FROM users WHERE email = $1',
      [email],
    );
    expect(rows).toEqual([{ id: expect.any(String), email_verified: true }]);
    expect((await login(owner)).statusCode).toBe(200);
    const denied = await login(attacker);
    expect(denied.statusCode).toBe(401);
    expect(denied.json().error.code).toBe('INVALID_CREDENTIALS');
    const reclaimed = await t.db.query(
      `SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'account.reclaimed'`,
      [rows[0]?.id],
    );
    expect(reclaimed.rows).toHaveLength(1);
  });

  // Regression: a sign-up for a new address answered only after the link's two transactions, one for a taken address
  // did not (59 ms against 38 ms). Held here: the address's send slot is locked, and the sign-up answers anyway.
  it.skipIf(!process.env.TEST_DATABASE_URL)('a sign-up answers before its email is prepared', async () => {
    const user = fresh();
    const marker = `email-verification-sent:${createHash('sha256').update(user.email).digest('hex')}`;
    await t.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [marker]);
      const res = await Promise.race([
        register(user),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 5000).unref()),
      ]);
      expect(res?.statusCode).toBe(201);
      expect(mailsTo(user.email)).toHaveLength(0);
    });
    await smtp.waitFor((m) => addressOf(m) === user.email);
  });

  it('an email that could not be prepared is logged; the user asks for a new link and gets one', async () => {
    const user = fresh();
    const marker = `email-verification-sent:${createHash('sha256').update(user.email).digest('hex')}`;
    await t.db.query(
      `ALTER TABLE verification_tokens ADD CONSTRAINT fail_one_address CHECK (identifier <> '${marker}') NOT VALID`,
    );
    try {
      expect((await register(user)).statusCode).toBe(201);
      await expect.poll(() => t.logs.text).toContain('preparing a verification email failed');
    } finally {
      await t.db.query('ALTER TABLE verification_tokens DROP CONSTRAINT fail_one_address');
    }
    // The failure left the address's slot free. The user has no session: the link confirms the address by a reset.
    expect((await resend(user.email)).statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => addressOf(m) === user.email);
    expect((await resetPassword(confirmToken(mail), user.password)).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
  });

  // Regression: the registrant's name opened the email's text ("Hello <name>,"), so whoever registered an address first
  // wrote the opening lines of the genuine emails sent to it, and of those its owner gets later.
  it('verification emails and sign-up notices carry nothing the registrant wrote', async () => {
    const user = fresh();
    const name = 'Alice,\n\nSECURITY ALERT: confirm your identity at https://evil.example/reset\n\nThanks';
    const res = await t.app.inject({ method: 'POST', url: '/auth/register', payload: { ...user, name } });
    expect(res.statusCode).toBe(201);
    /** The address's `n`th email, once it has arrived. */
    const received = async (n: number) => {
      await smtp.waitFor(() => mailsTo(user.email).length >= n);
      return mailsTo(user.email)[n - 1] as NonNullable<ReturnType<typeof mailsTo>[number]>;
    };
    expect((await received(1)).subject).toMatch(/Verify your email/);
    await expireSlots();
    await register(user); // the address has an account: a notice, verified or not
    expect((await received(2)).subject).toMatch(NOTICE);
    await expireSlots();
    // A resend signed in to the account (its registrant): a new link.
    expect((await resend(user.email, await sessionOf(user))).statusCode).toBe(202);
    expect((await received(3)).subject).toMatch(/Verify your email/);
    await expireSlots();
    // Not signed in: a link to confirm the address by choosing a password, which proves it (then "password changed").
    expect((await resend(user.email)).statusCode).toBe(202);
    expect((await resetPassword(confirmToken(await received(4)), user.password)).statusCode).toBe(200);
    expect((await received(5)).subject).not.toMatch(NOTICE);
    await expireSlots();
    await register(user); // verified now: a notice to the owner
    expect((await received(6)).subject).toMatch(NOTICE);
    expect(mailsTo(user.email)).toHaveLength(6);
    for (const mail of mailsTo(user.email)) {
      for (const body of [mail.text ?? '', mail.html || '']) {
        expect(body).not.toContain('evil.example');
        expect(body).not.toContain('SECURITY ALERT');
        expect(body).not.toContain('Alice');
      }
    }
  });

  // Regression: a resend for an unverified account answered after writing its new link and an audit row, one for any
  // other address sooner (26.5 ms against 20.0 ms, median). Held here: with the users table locked against every
  // statement, an unknown and a known address are both answered (only the address's send slot is taken before the
  // answer); the known one's email is sent once the lock is released.
  it.skipIf(!process.env.TEST_DATABASE_URL)('a resend answers before it looks the address up', async () => {
    const user = fresh();
    const userId = (await register(user)).json().userId as string;
    await smtp.waitFor((m) => addressOf(m) === user.email);
    await expireSlots();
    await t.db.transaction(async (tx) => {
      await tx.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      // Each answer arrives before its request's work waits for the lock (then that work waits: it is under way).
      for (const [i, email] of ['nobody-resent@example.com', user.email].entries()) {
        const answer = resend(email).then((r) => r.statusCode);
        expect(await Promise.race([answer, statementsWaitingForALock(t.db, i + 1)])).toBe(202);
        await statementsWaitingForALock(t.db, i + 1);
      }
    });
    // Not signed in: the email is a link to confirm the address by choosing a password.
    await smtp.waitFor(() => mailsTo(user.email).length === 2);
    const mail = mailsTo(user.email)[1] as NonNullable<ReturnType<typeof mailsTo>[number]>;
    expect((await resetPassword(confirmToken(mail), user.password)).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
    expect(await eventsOf(userId, 'password.reset_requested', 'email.verification_sent')).toEqual([
      { event: 'password.reset_requested', ip: null, user_agent: null },
    ]);
    expect(mailsTo('nobody-resent@example.com')).toHaveLength(0);
  });

  it('a resend that fails after the answer is logged; the resend slot of the address stays taken, a reset is sent at once', async () => {
    const user = fresh();
    const userId = (await register(user)).json().userId as string;
    await smtp.waitFor((m) => addressOf(m) === user.email);
    await expireSlots();
    // A verification link's row holds "<user id>\n<address>", a reset link's the user id: this one user's new links
    // cannot be written (the resend, not signed in, sends a reset link).
    await t.db.query(
      `ALTER TABLE verification_tokens ADD CONSTRAINT fail_one_user CHECK (token NOT LIKE '${userId}%') NOT VALID`,
    );
    try {
      expect((await resend(user.email)).statusCode).toBe(202);
      await expect.poll(() => t.logs.text).toContain('resending a verification email failed');
    } finally {
      await t.db.query('ALTER TABLE verification_tokens DROP CONSTRAINT fail_one_user');
    }
    const line = t.logs.lines.find((l) => l.includes('resending a verification email failed')) ?? '';
    expect(JSON.parse(line).err.message).toContain('fail_one_user');
    expect(line).not.toContain(user.email);
    // Not signed in, only an unverified account's resend can fail: it keeps the address's slot, as an unknown address
    // keeps it. The reset limit's slot was freed, so a reset is sent at once (its answer is 202 whatever the address).
    expect((await resend(user.email)).statusCode).toBe(429);
    const forgot = await t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email: user.email } });
    expect(forgot.statusCode).toBe(202);
    await smtp.waitFor(() => mailsTo(user.email).length === 2);
  });
});
