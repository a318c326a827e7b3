import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMailingApp } from '../../helpers/mailing-app.js';
import { addressOf, linkIn, type SmtpSink } from '../../helpers/smtp-sink.js';
import { registerUser, type TestApp } from '../../helpers/test-app.js';

type User = Awaited<ReturnType<typeof registerUser>>;

// Regression: a password change or reset ended every session, but what had been issued under the old password lived
// on: the other reset links (valid for an hour), and a two-factor challenge (the password checked, waiting for a
// code). Whoever held either still got in after the owner had changed or reset the password to shut them out.
describe('a new password voids what was issued under the old one', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp());
  });
  afterAll(() => close?.());

  const post = (url: string, payload: object, token?: string) =>
    t.app.inject({ method: 'POST', url, payload, headers: token ? { authorization: `Bearer ${token}` } : {} });
  const changePassword = (u: User, newPassword: string) =>
    post('/auth/password/change', { currentPassword: u.password, newPassword }, u.token);

  async function resetTokenFor(email: string): Promise<string> {
    const before = smtp.messages.length;
    expect((await post('/auth/password/forgot', { email })).statusCode).toBe(202);
    const mail = await smtp.waitFor(
      (m) =>
        addressOf(m) === email &&
        smtp.messages.indexOf(m) >= before &&
        /^(Reset|Choose) your .+ password$/.test(m.subject ?? ''),
    );
    return linkIn(mail, '/reset-password').searchParams.get('token') ?? '';
  }

  async function withTwoFactor(): Promise<{ user: User; totp: OTPAuth.TOTP }> {
    const user = await registerUser(t.app);
    const res = await post('/auth/2fa/enable', { password: user.password }, user.token);
    const totp = OTPAuth.URI.parse(res.json().otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    return { user, totp };
  }

  it('a password change voids the pending reset links', async () => {
    const user = await registerUser(t.app);
    const leaked = await resetTokenFor(user.email);
    expect((await changePassword(user, 'OwnersNewPassword456!')).statusCode).toBe(200);
    const res = await post('/auth/password/reset', { token: leaked, password: 'AttackerPassword789!' });
    expect([res.statusCode, res.json().error?.code]).toEqual([400, 'INVALID_RESET_TOKEN']);
    expect((await post('/auth/login', { email: user.email, password: 'OwnersNewPassword456!' })).statusCode).toBe(200);
  });

  it("a first password, set by a passwordless user's reset, voids the other pending reset links", async () => {
    const user = await registerUser(t.app);
    await t.db.query('UPDATE users SET email_verified = true WHERE id = $1', [user.userId]);
    await t.db.query(`DELETE FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential'`, [user.userId]);
    const first = await resetTokenFor(user.email);
    // As if the per-address interval between reset emails had passed.
    await t.db.query(`UPDATE verification_tokens SET expires_at = now() WHERE identifier LIKE 'password-reset-sent:%'`);
    const leaked = await resetTokenFor(user.email);
    expect((await post('/auth/password/reset', { token: first, password: 'OwnersFirstPassword1!' })).statusCode).toBe(
      200,
    );
    const res = await post('/auth/password/reset', { token: leaked, password: 'AttackerPassword789!' });
    expect([res.statusCode, res.json().error?.code]).toEqual([400, 'INVALID_RESET_TOKEN']);
  });

  it('a password change voids a two-factor challenge waiting for its code', async () => {
    const { user, totp } = await withTwoFactor();
    const login = await post('/auth/login', { email: user.email, password: user.password });
    const { challengeToken } = login.json();
    expect(challengeToken).toBeTruthy();
    expect((await changePassword(user, 'OwnersNewPassword456!')).statusCode).toBe(200);
    // The next step's code: this step's was spent confirming the enrolment.
    const res = await post('/auth/2fa/verify', {
      challengeToken,
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');
    const { rows } = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.userId]);
    expect(rows).toHaveLength(1); // the owner's own session, which changed the password
  });

  it('a password reset voids a two-factor challenge waiting for its code', async () => {
    const { user, totp } = await withTwoFactor();
    // Verified: a reset of an unverified account reclaims it, which removes its two-factor enrolment anyway.
    await t.db.query('UPDATE users SET email_verified = true WHERE id = $1', [user.userId]);
    const { challengeToken } = (await post('/auth/login', { email: user.email, password: user.password })).json();
    const token = await resetTokenFor(user.email);
    expect((await post('/auth/password/reset', { token, password: 'OwnersNewPassword456!' })).statusCode).toBe(200);
    const res = await post('/auth/2fa/verify', {
      challengeToken,
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('TWO_FACTOR_CHALLENGE_INVALID');
  });

  it('a two-factor challenge still completes when nothing changed the password', async () => {
    const { user, totp } = await withTwoFactor();
    const { challengeToken } = (await post('/auth/login', { email: user.email, password: user.password })).json();
    const res = await post('/auth/2fa/verify', {
      challengeToken,
      code: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().token).toBeTruthy();
  });
});
