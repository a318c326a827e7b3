import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMailingApp } from '../../helpers/mailing-app.js';
import { addressOf, type SmtpSink } from '../../helpers/smtp-sink.js';
import { createSoftAuthenticator } from '../../helpers/soft-authenticator.js';
import { registerUser, type TestApp } from '../../helpers/test-app.js';
import { addPasskey } from '../../passkeys/helpers.js';

// Regression: a password change emailed the owner, but a new passkey (a way in that outlives every session) and
// two-factor authentication turned off did not: the steps an account takeover takes to stay in went unnoticed.
describe('security notices by email', () => {
  let t: TestApp;
  let smtp: SmtpSink;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ t, smtp, close } = await startMailingApp());
  });
  afterAll(() => close?.());

  const post = (url: string, payload: object, token: string) =>
    t.app.inject({ method: 'POST', url, payload, headers: { authorization: `Bearer ${token}` } });
  const noticeTo = (email: string, text: RegExp) =>
    smtp.waitFor((m) => addressOf(m) === email && /Security notice/.test(m.subject ?? '') && text.test(m.text ?? ''));

  it('tells the owner when a passkey is added, and when two-factor authentication is turned on and off', async () => {
    const user = await registerUser(t.app);
    await addPasskey(t.app, user.token, createSoftAuthenticator());
    const added = await noticeTo(user.email, /A passkey was added/);
    expect(added.html).toContain('A passkey was added');

    const enable = await post('/auth/2fa/enable', { password: user.password }, user.token);
    const totp = OTPAuth.URI.parse(enable.json().otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    await noticeTo(user.email, /Two-factor authentication was turned on/);
    const code = totp.generate({ timestamp: Date.now() + 30_000 });
    expect((await post('/auth/2fa/disable', { code }, user.token)).statusCode).toBe(200);
    await noticeTo(user.email, /Two-factor authentication was turned off/);
  });

  it('sends nothing to an anonymous user’s placeholder address', async () => {
    const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as { token: string };
    const before = smtp.messages.length;
    await addPasskey(t.app, anon.token, createSoftAuthenticator());
    // A notice for a registered user sent after it arrives first if the anonymous one was sent at all.
    const user = await registerUser(t.app);
    await addPasskey(t.app, user.token, createSoftAuthenticator());
    await noticeTo(user.email, /A passkey was added/);
    expect(smtp.messages.slice(before).map((m) => addressOf(m))).toEqual([user.email]);
  });

  // Regression: notices had no per-address limit, so whoever registered an address (nothing proves it by default)
  // could have the gateway mail it once per passkey added, as often as the per-IP rules allow.
  it('sends one address at most a burst of notices per interval, however many changes are made', async () => {
    const user = await registerUser(t.app);
    for (let i = 0; i < 20; i++) await addPasskey(t.app, user.token, createSoftAuthenticator());
    // The password-changed notice shares the limit: it is not a way around it.
    const change = { currentPassword: user.password, newPassword: `${user.password}-new` };
    expect((await post('/auth/password/change', change, user.token)).statusCode).toBe(200);
    await noticeTo(user.email, /A passkey was added/);
    // Time for any notice over the limit to arrive, were it sent.
    await new Promise((r) => setTimeout(r, 1500));
    const notices = smtp.messages.filter(
      (m) => addressOf(m) === user.email && /Security notice|password was changed/.test(m.subject ?? ''),
    );
    expect(notices).toHaveLength(3);
    // Each one dropped is logged with its kind, not its address.
    const dropped = t.logs.lines.filter((l) => l.includes('security notice not sent'));
    expect(dropped).toHaveLength(18);
    expect(dropped.some((l) => l.includes('"kind":"password.changed"'))).toBe(true);
    expect(dropped.join('\n')).not.toContain(user.email);
  });
});
