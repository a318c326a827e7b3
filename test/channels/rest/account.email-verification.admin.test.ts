import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMailingApp } from '../../helpers/mailing-app.js';
import { addressOf, linkIn, openEmailedLink, type SmtpSink } from '../../helpers/smtp-sink.js';
import { registerUser, type TestApp } from '../../helpers/test-app.js';

/**
 * The emailed verification link of an address in admin.emails: proving it makes the account an administrator, so the
 * link takes the account back for whoever holds the inbox, as a magic link or a reset does.
 */
const SQUATTED = 'squatted.boss@example.com';
const RACED = 'raced.boss@example.com';
const PROMOTED = 'promoted.boss@example.com';
const LEGACY = 'legacy.boss@example.com';
const UPGRADED = 'upgraded.boss@example.com';
const RECLAIMED =
  /As it is an administrator address, the password and sessions set up before this proof no longer work/;

interface Account {
  email: string;
  password: string;
  token: string;
  userId: string;
}

function helpers(get: () => { t: TestApp; smtp: SmtpSink }) {
  const login = (user: { email: string; password: string }) =>
    get().t.app.inject({ method: 'POST', url: '/auth/login', payload: { email: user.email, password: user.password } });
  const sessionStatus = async (token: string) =>
    (await get().t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } })).statusCode;
  const roleOf = async (userId: string) =>
    (await get().t.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [userId])).rows[0]?.role;
  /** A plain verification link, asked for signed in to the account (the only caller who gets one). */
  const plainLink = async ({ email, token }: { email: string; token: string }) => {
    const { t, smtp } = get();
    const before = smtp.messages.length;
    const resend = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      headers: { authorization: `Bearer ${token}` },
      payload: { email },
    });
    expect(resend.statusCode).toBe(202);
    const mail = await smtp.waitFor(
      (m) => addressOf(m) === email && smtp.messages.indexOf(m) >= before && /Verify your email/.test(m.subject ?? ''),
    );
    return linkIn(mail, '/auth/email/verify');
  };
  /** The owner of the inbox chooses a password through /auth/password/forgot. */
  const resetByInbox = async (email: string, password: string) => {
    const { t, smtp } = get();
    const before = smtp.messages.length;
    await t.app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { email } });
    const mail = await smtp.waitFor(
      (m) => addressOf(m) === email && smtp.messages.indexOf(m) >= before && /password/.test(m.subject ?? ''),
    );
    const token = linkIn(mail, '/reset-password').searchParams.get('token');
    const reset = await t.app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token, password } });
    expect(reset.statusCode).toBe(200);
  };
  const reclaims = async (userId: string) =>
    (
      await get().t.db.query<{ details: { method: string; removed: { sessions: number; password: number } } }>(
        `SELECT details FROM auth_audit_log WHERE user_id = $1 AND event = 'account.reclaimed'`,
        [userId],
      )
    ).rows.map((r) => r.details);
  return { login, sessionStatus, roleOf, plainLink, resetByInbox, reclaims };
}

describe('email verification of an admin.emails address (verification off, the default)', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp({ admin: { emails: [SQUATTED, RACED, PROMOTED, LEGACY] } }));
  });
  afterAll(() => close?.());
  const { login, sessionStatus, roleOf, plainLink, resetByInbox, reclaims } = helpers(() => ({ t, smtp }));

  // Regression: whoever registered an admin address first asked for a plain link signed in, its owner pressed the
  // button, and the registrant's next sign-in with their own password was granted the admin role.
  it('the link takes the account back from the registrant; the role goes to whoever chooses a password by the inbox', async () => {
    const squatter: Account = await registerUser(t.app, { email: SQUATTED, password: 'SquatterPassword1!' });
    const link = await plainLink(squatter);

    const page = await openEmailedLink(t.app, link);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Email address verified');
    expect(page.body).toMatch(RECLAIMED);
    expect(page.body).not.toContain('you can sign in.');

    // The registrant's session ended and their password is gone: no admin for them.
    expect(await sessionStatus(squatter.token)).toBe(401);
    const denied = await login(squatter);
    expect(denied.statusCode).toBe(401);
    expect(denied.json().error.code).toBe('INVALID_CREDENTIALS');
    expect(await roleOf(squatter.userId)).toBe('user');
    expect(await reclaims(squatter.userId)).toEqual([
      expect.objectContaining({
        method: 'email_verification',
        removed: expect.objectContaining({ sessions: 1, password: 1 }),
      }),
    ]);
    const verified = await t.db.query(`SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'email.verified'`, [
      squatter.userId,
    ]);
    expect(verified.rows).toHaveLength(1);

    // The inbox's owner chooses a password; their sign-in is granted the role (sign-in guard).
    const owner = { email: SQUATTED, password: 'OwnersOwnPassword1!' };
    await resetByInbox(SQUATTED, owner.password);
    const signedIn = await login(owner);
    expect(signedIn.statusCode).toBe(200);
    expect(signedIn.json().userId).toBe(squatter.userId);
    expect(await roleOf(squatter.userId)).toBe('admin');
    const admin = await t.app.inject({
      method: 'GET',
      url: '/admin/users',
      headers: { authorization: `Bearer ${signedIn.json().token}` },
    });
    expect(admin.statusCode).toBe(200);
    // The proof reclaimed once: the reset after it found the address verified.
    expect(await reclaims(squatter.userId)).toHaveLength(1);
  });

  it('an ordinary address verifies as before: the registrant keeps their password and session', async () => {
    const user: Account = await registerUser(t.app);
    const page = await openEmailedLink(t.app, await plainLink(user));
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Your email address is verified; you can sign in.');
    expect(await sessionStatus(user.token)).toBe(200);
    expect((await login(user)).statusCode).toBe(200);
    expect(await reclaims(user.userId)).toEqual([]);
  });

  it('an account an operator already made administrator keeps its password and sessions', async () => {
    const boss: Account = await registerUser(t.app, { email: PROMOTED });
    await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [boss.userId]);
    const page = await openEmailedLink(t.app, await plainLink(boss));
    expect(page.body).toContain('Your email address is verified; you can sign in.');
    expect(await sessionStatus(boss.token)).toBe(200);
    expect((await login(boss)).statusCode).toBe(200);
    expect(await reclaims(boss.userId)).toEqual([]);
  });

  it('a link issued before links carried their address reclaims an admin address too', async () => {
    const squatter: Account = await registerUser(t.app, { email: LEGACY });
    const link = await plainLink(squatter);
    await t.db.query(
      `UPDATE verification_tokens SET token = $1 WHERE identifier LIKE 'email-verification:%' AND token LIKE $2`,
      [squatter.userId, `${squatter.userId}\n%`],
    );
    expect((await openEmailedLink(t.app, link)).body).toMatch(RECLAIMED);
    expect((await login(squatter)).statusCode).toBe(401);
    expect(await roleOf(squatter.userId)).toBe('user');
  });

  it('a sign-in with the registrant’s password racing the link gets no session that outlives it', async () => {
    for (let round = 0; round < 4; round++) {
      // The same configured address each round: the previous round's account, and its resend slot, are gone.
      await t.db.query('DELETE FROM users WHERE lower(email) = $1', [RACED]);
      await t.db.query(`DELETE FROM verification_tokens WHERE identifier LIKE 'email-verification-sent:%'`);
      const squatter: Account = await registerUser(t.app, { email: RACED, password: 'SquatterPassword1!' });
      const token = (await plainLink(squatter)).searchParams.get('token');
      const [signIn, verified] = await Promise.all([
        login(squatter),
        t.app.inject({ method: 'POST', url: '/auth/email/verify', payload: { token } }),
      ]);
      expect(verified.statusCode).toBe(200);
      expect(verified.json().message).toMatch(RECLAIMED);
      // Whichever came first, the registrant holds no working session, and the password no longer signs in.
      if (signIn.statusCode === 200) expect(await sessionStatus(signIn.json().token)).toBe(401);
      else expect(signIn.json().error.code).toBe('INVALID_CREDENTIALS');
      expect(await sessionStatus(squatter.token)).toBe(401);
      expect((await login(squatter)).statusCode).toBe(401);
      const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [squatter.userId]);
      expect(rows).toHaveLength(0);
    }
  });
});

describe('email verification of an admin.emails address: an anonymous upgrade (verification required)', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp({
      auth: { require_email_verification: true },
      admin: { emails: [UPGRADED] },
    }));
  });
  afterAll(() => close?.());
  const { login, sessionStatus, roleOf, resetByInbox, reclaims } = helpers(() => ({ t, smtp }));

  // Regression, the same through an upgrade: an anonymous user asked to become the admin address with a password of
  // its own; the link the owner pressed completed the upgrade, verified, with that password.
  it('the link completes the upgrade but not for its requester: their password and session go', async () => {
    const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
      userId: string;
      token: string;
    };
    const requester = { email: UPGRADED, password: 'RequesterPassword1!' };
    const upgrade = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${anon.token}` },
      payload: { ...requester, name: 'Ana' },
    });
    expect(upgrade.statusCode).toBe(201);
    const mail = await smtp.waitFor((m) => addressOf(m) === UPGRADED && /Verify your email/.test(m.subject ?? ''));

    const page = await openEmailedLink(t.app, linkIn(mail, '/auth/email/verify'));
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(RECLAIMED);
    const row = await t.db.query<{ email: string; email_verified: boolean; is_anonymous: boolean }>(
      'SELECT email, email_verified, is_anonymous FROM users WHERE id = $1',
      [anon.userId],
    );
    expect(row.rows[0]).toEqual({ email: UPGRADED, email_verified: true, is_anonymous: false });
    expect(await sessionStatus(anon.token)).toBe(401);
    expect(await sessionStatus(upgrade.json().token)).toBe(401);
    expect((await login(requester)).statusCode).toBe(401);
    expect(await roleOf(anon.userId)).toBe('user');
    expect(await reclaims(anon.userId)).toEqual([
      expect.objectContaining({ method: 'email_verification', removed: expect.objectContaining({ password: 1 }) }),
    ]);

    const owner = { email: UPGRADED, password: 'OwnersOwnPassword1!' };
    await resetByInbox(UPGRADED, owner.password);
    expect((await login(owner)).statusCode).toBe(200);
    expect(await roleOf(anon.userId)).toBe('admin');
  });
});
