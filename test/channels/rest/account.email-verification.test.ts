import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressOf, linkIn, type SmtpSink, startSmtpSink } from '../../helpers/smtp-sink.js';
import { createTestApp, type TestApp } from '../../helpers/test-app.js';

describe('email verification (auth.require_email_verification: true)', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  beforeAll(async () => {
    smtp = await startSmtpSink();
    t = await createTestApp({
      config: { email: { smtp_url: smtp.url }, auth: { require_email_verification: true } },
    });
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  let n = 0;
  const fresh = () => ({ email: `verify${++n}-${Date.now()}@example.com`, password: 'SecurePassword123!' });
  const register = (user: { email: string; password: string }) =>
    t.app.inject({ method: 'POST', url: '/auth/register', payload: { ...user, name: 'Vera <b>' } });
  const login = (user: { email: string; password: string }) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: user });
  const resend = (email: string) =>
    t.app.inject({ method: 'POST', url: '/auth/email/verify/resend', payload: { email } });
  const mailsTo = (email: string) => smtp.messages.filter((m) => addressOf(m) === email);
  const expireSlots = () =>
    t.db.query(
      `UPDATE verification_tokens SET expires_at = now() - interval '1 second'
        WHERE identifier LIKE 'email-verification-sent:%'`,
    );

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
    expect(mail.html).toContain('Hello Vera &lt;b&gt;,'); // the name is escaped in HTML
    const link = linkIn(mail, '/auth/email/verify');
    expect(link.origin).toBe(new URL(t.config.server.base_url).origin);

    const follow = await t.app.inject({ url: `${link.pathname}${link.search}` });
    expect(follow.statusCode).toBe(200);
    expect(follow.json().success).toBe(true);
    expect((await login(user)).statusCode).toBe(200);

    // The link works once.
    const again = await t.app.inject({ url: `${link.pathname}${link.search}` });
    expect(again.statusCode).toBe(400);
    expect(again.json().error.code).toBe('INVALID_VERIFICATION_TOKEN');

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

  it('resend: a new link replaces the old one; limited per address, same answer for unknown addresses', async () => {
    const user = fresh();
    await register(user);
    const first = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    // The sign-up email took this address's slot: an immediate resend waits out the interval.
    const early = await resend(user.email);
    expect(early.statusCode).toBe(429);
    expect(Number(early.headers['retry-after'])).toBeLessThanOrEqual(t.config.auth.email_verification_resend_interval);
    // Better Auth's own resend route shares the limit: it answers, but sends nothing within the interval.
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
    expect(ba.statusCode).toBe(200);
    expect((await links()).rows).toEqual(before); // no new link was issued
    await expireSlots(); // the interval has passed

    const ok = await resend(user.email.toUpperCase());
    expect(ok.statusCode).toBe(202);
    const unknown = await resend('nobody-at-all@example.com');
    expect(unknown.statusCode).toBe(202);
    expect(unknown.json()).toEqual(ok.json());

    await smtp.waitFor((m) => mailsTo(user.email).length === 2 && addressOf(m) === user.email);
    const second = linkIn(
      mailsTo(user.email)[1] as NonNullable<ReturnType<typeof mailsTo>[number]>,
      '/auth/email/verify',
    );
    expect(second.searchParams.get('token')).not.toBe(first.searchParams.get('token'));

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

    // The old link is dead; the newest one works.
    const old = await t.app.inject({ url: `${first.pathname}${first.search}` });
    expect(old.statusCode).toBe(400);
    await smtp.waitFor(() => mailsTo(user.email).length === 3); // registration, resend, the one burst resend
    const newest = mailsTo(user.email).at(-1);
    const latest = linkIn(newest as NonNullable<typeof newest>, '/auth/email/verify');
    expect((await t.app.inject({ url: `${latest.pathname}${latest.search}` })).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
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

  it('an anonymous user upgraded with an email gets the link too; password sign-ins wait for it', async () => {
    const anon = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    expect(anon.statusCode).toBe(201);
    const user = fresh();
    const upgraded = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${anon.json().token}` },
      payload: { ...user, name: 'Ana' },
    });
    expect(upgraded.statusCode).toBe(201);
    // The session the anonymous user had goes on.
    const me = await t.app.inject({
      url: '/auth/session',
      headers: { authorization: `Bearer ${upgraded.json().token}` },
    });
    expect(me.json().user.email).toBe(user.email);

    expect((await login(user)).json().error.code).toBe('EMAIL_NOT_VERIFIED');
    const link = linkIn(await smtp.waitFor((m) => addressOf(m) === user.email), '/auth/email/verify');
    expect((await t.app.inject({ url: `${link.pathname}${link.search}` })).statusCode).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
  });
});
