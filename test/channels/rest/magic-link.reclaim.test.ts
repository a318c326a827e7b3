import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSiblingApp } from '../../helpers/sibling-app.js';
import { openEmailedLink, type SmtpSink, startSmtpSink } from '../../helpers/smtp-sink.js';
import { createSoftAuthenticator } from '../../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';
import { addPasskey, assertion, postAuthentication } from '../../passkeys/helpers.js';

// Pre-hijacked accounts (Sudhodanan & Paverd 2022): someone registers the victim's address first, with a password they
// know; the victim later signs in by magic link. The link proves the address, and the account becomes the victim's
// alone: everything the registrant added before the address was proven stops working.

const FRONT = 'http://localhost:5173/signed-in';
const LINK = /http:\/\/localhost:3000(\/auth\/magic-link\/verify\?token=[\w-]+)/;
const VERIFY_LINK = /http:\/\/localhost:3000(\/auth\/email\/verify\?token=[\w-]+)/;

describe('a magic link reclaims an account whose address was not verified', () => {
  let smtp: SmtpSink;
  let t: TestApp;
  beforeAll(async () => {
    smtp = await startSmtpSink();
    t = await createTestApp({
      config: {
        oauth: { redirect_url: FRONT },
        email: { smtp_url: smtp.url },
        auth: { trusted_device_days: 10 },
        magic_link: { max_per_window: 10 },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  type App = TestApp['app'];
  const session = (token: string, app: App = t.app) =>
    app.inject({ method: 'GET', url: '/auth/session', headers: bearer(token) });
  const login = (email: string, password: string, headers: Record<string, string> = {}, app: App = t.app) =>
    app.inject({ method: 'POST', url: '/auth/login', headers, payload: { email, password } });

  /** Asks for a link, opens it, exchanges the code: the token of the session the link signed in. */
  const signInByLink = async (email: string, app: App = t.app): Promise<{ userId: string; token: string }> => {
    const sent = smtp.messages.length;
    expect((await app.inject({ method: 'POST', url: '/auth/magic-link', payload: { email } })).statusCode).toBe(200);
    const mail = await smtp.waitFor(
      (m) => m.rcpt.includes(email) && m.subject === 'Your sign-in link' && smtp.messages.indexOf(m) >= sent,
    );
    const path = LINK.exec(mail.text ?? '')?.[1] as string;
    const verify = await openEmailedLink(app, path, { 'user-agent': 'victim-browser' });
    expect(verify.statusCode).toBe(302);
    const front = new URL(verify.headers.location as string);
    expect(front.searchParams.get('error')).toBeNull();
    const ex = await app.inject({
      method: 'POST',
      url: '/auth/oauth/exchange',
      payload: { code: front.searchParams.get('code') },
    });
    expect(ex.statusCode).toBe(200);
    return ex.json();
  };

  const reclaimEvents = async (userId: string) =>
    (
      await t.db.query<{ details: Record<string, unknown>; user_agent: string | null }>(
        `SELECT details, user_agent FROM auth_audit_log WHERE user_id = $1 AND event = 'account.reclaimed'`,
        [userId],
      )
    ).rows;

  it("the registrant's session and password stop working; the owner's session works; account.reclaimed", async () => {
    const attacker = await registerUser(t.app, { email: 'victim@example.com', password: 'AttackerKnows123!' });
    expect((await session(attacker.token)).statusCode).toBe(200);

    const victim = await signInByLink('victim@example.com');
    expect(victim.userId).toBe(attacker.userId);

    const stale = await session(attacker.token);
    expect(stale.statusCode).toBe(401);
    const password = await login('victim@example.com', 'AttackerKnows123!');
    expect(password.statusCode).toBe(401);
    expect(password.json().error.code).toBe('INVALID_CREDENTIALS');
    const mine = await session(victim.token);
    expect(mine.statusCode).toBe(200);
    expect(mine.json().user.email).toBe('victim@example.com');

    const events = await reclaimEvents(victim.userId);
    expect(events).toEqual([
      {
        user_agent: 'victim-browser',
        details: {
          method: 'magic_link',
          removed: {
            sessions: 1,
            password: 1,
            oauthAccounts: 0,
            passkeys: 0,
            twoFactor: 0,
            channelLinks: 0,
            channelLinkCodes: 0,
            devices: 1, // every sign-in files its session under a device, registration too
            ipAllowlist: 0,
          },
        },
      },
    ]);
    // The owner sees it in their own audit trail.
    const audit = await t.app.inject({ method: 'GET', url: '/auth/audit?limit=100', headers: bearer(victim.token) });
    expect(audit.json().events.map((e: { event: string }) => e.event)).toContain('account.reclaimed');
  });

  it('removes the passkey, 2FA, trusted device, allow list, channel link, link code and provider account added before', async () => {
    const email = 'victim2@example.com';
    const attacker = await registerUser(t.app, { email, password: 'AttackerKnows123!' });
    const userId = attacker.userId;

    const enable = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/enable',
      headers: bearer(attacker.token),
      payload: { password: 'AttackerKnows123!' },
    });
    expect(enable.statusCode).toBe(200);
    const totp = OTPAuth.URI.parse(enable.json().otpauthUri) as OTPAuth.TOTP;
    const confirm = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/confirm',
      headers: bearer(attacker.token),
      payload: { code: totp.generate() },
    });
    expect(confirm.statusCode).toBe(200);
    // A second session, signed in with a code, on a device the registrant then trusts (after 2FA is on: turning it on
    // withdraws trust and ends the other sessions). The next step's code: the one that confirmed is used.
    const prompted = await login(email, 'AttackerKnows123!');
    const deviceKey = prompted.headers['x-device-id'] as string;
    const onDevice = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/verify',
      headers: { 'x-device-id': deviceKey },
      payload: {
        challengeToken: prompted.json().challengeToken,
        code: totp.generate({ timestamp: Date.now() + 30_000 }),
      },
    });
    expect(onDevice.statusCode).toBe(200);
    const devices = await t.app.inject({ url: '/auth/devices', headers: bearer(onDevice.json().token) });
    const deviceId = (devices.json().devices as Array<{ id: string; current: boolean }>).find((d) => d.current)?.id;
    const trust = await t.app.inject({
      method: 'PATCH',
      url: `/auth/devices/${deviceId}`,
      headers: bearer(onDevice.json().token),
      payload: { trusted: true },
    });
    expect(trust.statusCode).toBe(200);
    // The trusted device skips the 2FA prompt: password alone signs in there.
    expect((await login(email, 'AttackerKnows123!', { 'x-device-id': deviceKey })).json().token).toEqual(
      expect.any(String),
    );

    const authenticator = createSoftAuthenticator();
    const passkey = await addPasskey(t.app, attacker.token, authenticator);
    const allow = await t.app.inject({
      method: 'PUT',
      url: '/auth/ip-allowlist',
      headers: bearer(attacker.token),
      payload: { cidrs: ['127.0.0.1/32'] },
    });
    expect(allow.statusCode).toBe(200);
    // No Telegram bot or OAuth provider here: the rows their routes would write.
    await t.db.query(
      `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '4242')`,
      [userId],
    );
    await t.db.query(
      `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at)
       VALUES ('pending-code-hash', $1, 'telegram', now() + interval '10 minutes')`,
      [userId],
    );
    await t.db.query(
      `INSERT INTO user_credentials (id, user_id, account_id, provider_id) VALUES ('acct_gh', $1, 'gh-777', 'github')`,
      [userId],
    );

    // 2FA does not refuse the owner's link: the enrolment was the registrant's, and it goes.
    const victim = await signInByLink(email);
    expect(victim.userId).toBe(userId);
    expect((await session(victim.token)).statusCode).toBe(200);

    for (const token of [attacker.token, onDevice.json().token]) expect((await session(token)).statusCode).toBe(401);
    const onTrusted = await login(email, 'AttackerKnows123!', { 'x-device-id': deviceKey });
    expect(onTrusted.statusCode).toBe(401);
    expect(onTrusted.json().error.code).toBe('INVALID_CREDENTIALS');
    const byPasskey = await postAuthentication(
      t.app,
      await assertion(t.app, authenticator, { credentialId: passkey.credentialId }),
    );
    expect(byPasskey.json().error.code).toBe('PASSKEY_UNKNOWN_CREDENTIAL');

    const left = await t.db.query<Record<string, unknown>>(
      `SELECT u.email_verified, u.two_factor_enabled, u.ip_allowlist,
              (SELECT count(*)::int FROM passkeys WHERE user_id = u.id) AS passkeys,
              (SELECT count(*)::int FROM two_factor WHERE user_id = u.id) AS two_factor,
              (SELECT count(*)::int FROM user_credentials WHERE user_id = u.id) AS credentials,
              (SELECT count(*)::int FROM user_channel_links WHERE user_id = u.id) AS channel_links,
              (SELECT count(*)::int FROM channel_link_codes WHERE user_id = u.id) AS link_codes,
              (SELECT count(*)::int FROM devices WHERE id = $2) AS attacker_device,
              (SELECT count(*)::int FROM sessions WHERE user_id = u.id) AS sessions
         FROM users u WHERE u.id = $1`,
      [userId, deviceId],
    );
    expect(left.rows[0]).toEqual({
      email_verified: true,
      two_factor_enabled: false,
      ip_allowlist: null,
      passkeys: 0,
      two_factor: 0,
      credentials: 0,
      channel_links: 0,
      link_codes: 0,
      attacker_device: 0,
      sessions: 1, // the owner's
    });
    const [event] = await reclaimEvents(userId);
    expect(event?.details).toEqual({
      method: 'magic_link',
      removed: {
        sessions: 3,
        password: 1,
        oauthAccounts: 1,
        passkeys: 1,
        twoFactor: 1,
        channelLinks: 1,
        channelLinkCodes: 1,
        devices: 2,
        ipAllowlist: 1,
      },
    });
  });

  it('an account whose address is verified keeps its password and its other sessions', async () => {
    const owner = await registerUser(t.app, { email: 'verified@example.com', password: 'OwnerKnows123!' });
    await t.db.query('UPDATE users SET email_verified = TRUE WHERE id = $1', [owner.userId]);

    const linked = await signInByLink('verified@example.com');
    expect(linked.userId).toBe(owner.userId);
    expect((await session(owner.token)).statusCode).toBe(200);
    expect((await session(linked.token)).statusCode).toBe(200);
    expect((await login('verified@example.com', 'OwnerKnows123!')).statusCode).toBe(200);
    expect(await reclaimEvents(owner.userId)).toEqual([]);
  });

  it("the email verification link is the registrant's own flow: password and session stay", async () => {
    const user = await registerUser(t.app, { email: 'registrant@example.com', password: 'MineAll123!' });
    // Asked for signed in to the account: only its own session gets a plain verification link.
    const resend = await t.app.inject({
      method: 'POST',
      url: '/auth/email/verify/resend',
      headers: bearer(user.token),
      payload: { email: 'registrant@example.com' },
    });
    expect(resend.statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => m.rcpt.includes('registrant@example.com'));
    const verify = await openEmailedLink(t.app, VERIFY_LINK.exec(mail.text ?? '')?.[1] as string);
    expect(verify.statusCode).toBe(200);
    expect(verify.body).toContain('Email address verified');

    expect((await session(user.token)).statusCode).toBe(200);
    expect((await login('registrant@example.com', 'MineAll123!')).statusCode).toBe(200);
    expect(await reclaimEvents(user.userId)).toEqual([]);
  });

  it('a resend not signed in to the account sends a link to confirm the address by choosing a password', async () => {
    const email = 'registrant-anon@example.com';
    const user = await registerUser(t.app, { email, password: 'MineAll123!' });
    const resend = await t.app.inject({ method: 'POST', url: '/auth/email/verify/resend', payload: { email } });
    expect(resend.statusCode).toBe(202);
    const mail = await smtp.waitFor((m) => m.rcpt.includes(email));
    expect(mail.subject).toMatch(/^Choose your .+ password$/);
    expect(mail.text).toContain('/reset-password?token=');
    expect(VERIFY_LINK.exec(mail.text ?? '')).toBeNull();
    // Nothing changes until the link is used.
    expect((await session(user.token)).statusCode).toBe(200);
    expect(await reclaimEvents(user.userId)).toEqual([]);
  });

  it('two links opened at once: one reclaims, and both sessions they sign in stay', async () => {
    const email = 'twice@example.com';
    const attacker = await registerUser(t.app, { email });
    for (let i = 0; i < 2; i++) {
      await t.app.inject({ method: 'POST', url: '/auth/magic-link', payload: { email } });
    }
    const first = await smtp.waitFor((m) => m.rcpt.includes(email));
    const mails = [first, await smtp.waitFor((m) => m.rcpt.includes(email) && m !== first)];
    const opened = await Promise.all(mails.map((m) => openEmailedLink(t.app, LINK.exec(m.text ?? '')?.[1] as string)));
    const tokens: string[] = [];
    for (const res of opened) {
      const code = new URL(res.headers.location as string).searchParams.get('code');
      const ex = await t.app.inject({ method: 'POST', url: '/auth/oauth/exchange', payload: { code } });
      expect(ex.statusCode).toBe(200);
      tokens.push(ex.json().token);
    }
    expect(await reclaimEvents(attacker.userId)).toHaveLength(1);
    for (const token of tokens) expect((await session(token)).statusCode).toBe(200);
    expect((await session(attacker.token)).statusCode).toBe(401);
  });
  // Verification off: an upgrade takes the address at once, so the anonymous user holds it until the owner's link.
  it('an anonymous user upgraded to the address loses its session and password', async () => {
    const email = 'upgraded-now@example.com';
    const anon = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    const { token } = anon.json() as { token: string };
    const upgrade = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: bearer(token),
      payload: { email, password: 'AttackerKnows123!', name: 'x' },
    });
    expect(upgrade.statusCode).toBe(201);
    const attackerToken = (upgrade.json() as { token: string }).token;
    expect((await session(attackerToken)).statusCode).toBe(200);

    const victim = await signInByLink(email);
    expect((await session(attackerToken)).statusCode).toBe(401);
    expect((await session(token)).statusCode).toBe(401);
    expect((await login(email, 'AttackerKnows123!')).statusCode).toBe(401);
    expect((await session(victim.token)).statusCode).toBe(200);
    expect(await reclaimEvents(victim.userId)).toHaveLength(1);
  });

  describe('with auth.require_email_verification', () => {
    let strict: App;
    beforeAll(async () => {
      strict = await createSiblingApp(t, {
        oauth: { redirect_url: FRONT },
        email: { smtp_url: smtp.url },
        auth: { require_email_verification: true },
        magic_link: { max_per_window: 10 },
      });
    });
    afterAll(() => strict?.close());

    it("the registrant's password does not start working once the owner proves the address", async () => {
      const email = 'strict@example.com';
      const reg = await strict.inject({
        method: 'POST',
        url: '/auth/register',
        payload: { email, password: 'AttackerKnows123!', name: 'x' },
      });
      expect(reg.statusCode).toBe(201);
      expect((await login(email, 'AttackerKnows123!', {}, strict)).json().error.code).toBe('EMAIL_NOT_VERIFIED');

      const victim = await signInByLink(email, strict);
      const password = await login(email, 'AttackerKnows123!', {}, strict);
      expect(password.statusCode).toBe(401);
      expect(password.json().error.code).toBe('INVALID_CREDENTIALS');
      expect((await session(victim.token, strict)).statusCode).toBe(200);
    });

    // With verification required an anonymous upgrade waits for the link sent to the address (the owner's inbox):
    // the anonymous user never holds the address, so there is nothing to reclaim.
    it('an anonymous user asking for the address never holds it: no account, no working password', async () => {
      const email = 'upgraded@example.com';
      const anon = await strict.inject({ method: 'POST', url: '/auth/anonymous' });
      const { token } = anon.json() as { token: string };
      const upgrade = await strict.inject({
        method: 'POST',
        url: '/auth/register',
        headers: bearer(token),
        payload: { email, password: 'AttackerKnows123!', name: 'x' },
      });
      expect(upgrade.statusCode).toBe(201);
      expect((await session(token, strict)).json().user.email).toMatch(/@anonymous\.invalid$/);
      expect((await login(email, 'AttackerKnows123!', {}, strict)).json().error.code).toBe('INVALID_CREDENTIALS');
      const { rows } = await t.db.query('SELECT 1 FROM users WHERE lower(email) = $1', [email]);
      expect(rows).toHaveLength(0);
    });
  });
});
