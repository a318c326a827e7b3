import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMailingApp } from '../helpers/mailing-app.js';
import { addressOf, linkIn, openEmailedLink, type SmtpSink } from '../helpers/smtp-sink.js';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import { addPasskey, assertion, ORIGIN, postAuthentication, postRegistration, registrationOptions } from './helpers.js';

// Issue 6 item 5: registering a passkey upgrades an anonymous trial user, keeping its id.
describe('a passkey upgrades an anonymous user', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  // Regression: the registration share-locked the user row and the insert's trigger then wrote it (is_anonymous off):
  // two registrations at once each waited for the other, and one was aborted as a deadlock (500).
  it('registrations of one anonymous user at once all succeed', async () => {
    for (let round = 0; round < 3; round++) {
      const anon = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
      const { token } = anon.json() as { token: string };
      const credentials = [];
      for (let i = 0; i < 6; i++) {
        credentials.push(createSoftAuthenticator().createCredential(await registrationOptions(t.app, token), ORIGIN));
      }
      const results = await Promise.all(credentials.map((c) => postRegistration(t.app, token, c)));
      expect(results.map((r) => r.statusCode)).toEqual(Array(6).fill(200));
    }
  });

  it('keeps the id, clears is_anonymous, survives the anonymous cleanup, and signs in with the passkey alone', async () => {
    const anon = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    expect(anon.statusCode).toBe(201);
    const { userId, token } = anon.json() as { userId: string; token: string };

    const authenticator = createSoftAuthenticator();
    await addPasskey(t.app, token, authenticator);
    const { rows } = await t.db.query<{ is_anonymous: boolean }>('SELECT is_anonymous FROM users WHERE id = $1', [
      userId,
    ]);
    expect(rows[0]?.is_anonymous).toBe(false);

    // Old enough to be cleaned up if it were still anonymous.
    await t.db.query("UPDATE users SET created_at = now() - interval '365 days' WHERE id = $1", [userId]);
    await t.app.runSignInCleanup();
    expect((await t.db.query('SELECT 1 FROM users WHERE id = $1', [userId])).rows).toHaveLength(1);

    const res = await postAuthentication(t.app, await assertion(t.app, authenticator));
    expect(res.statusCode).toBe(200);
    expect(res.json().userId).toBe(userId);
  });
});

// Regression: the passkey cleared is_anonymous, and the email-and-password upgrade required it. Without verification
// such a user could never get an address or a password; with it, an upgrade waiting for its link was void for good.
describe('a passkey does not end the email-and-password upgrade', () => {
  const password = 'SecurePassword123!';
  const upgrade = (t: TestApp, token: string, email: string) =>
    t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${token}` },
      payload: { email, password, name: 'Pat' },
    });
  const userRow = async (t: TestApp, id: string) =>
    (
      await t.db.query<{ email: string; email_verified: boolean; is_anonymous: boolean }>(
        'SELECT email, email_verified, is_anonymous FROM users WHERE id = $1',
        [id],
      )
    ).rows[0];
  const login = (t: TestApp, email: string) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });

  describe('auth.require_email_verification: true', () => {
    let t: TestApp;
    let smtp: SmtpSink;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ t, smtp, close } = await startMailingApp({ auth: { require_email_verification: true } }));
    });
    afterAll(() => close?.());

    it('a passkey added while the upgrade waits for its link: the link still completes it, once', async () => {
      const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
        userId: string;
        token: string;
      };
      const email = `pending-${Date.now()}@example.com`;
      expect((await upgrade(t, anon.token, email)).statusCode).toBe(201);
      const authenticator = createSoftAuthenticator();
      await addPasskey(t.app, anon.token, authenticator);
      expect((await userRow(t, anon.userId))?.is_anonymous).toBe(false);

      const link = linkIn(await smtp.waitFor((m) => addressOf(m) === email), '/auth/email/verify');
      expect((await openEmailedLink(t.app, link)).statusCode).toBe(200);
      expect(await userRow(t, anon.userId)).toEqual({ email, email_verified: true, is_anonymous: false });
      const signedIn = await login(t, email);
      expect(signedIn.statusCode).toBe(200);
      expect(signedIn.json().userId).toBe(anon.userId);
      const res = await postAuthentication(t.app, await assertion(t.app, authenticator));
      expect(res.json().userId).toBe(anon.userId);

      // The rest of the upgrade's rules hold: the link works once, and the user is registered now.
      expect((await openEmailedLink(t.app, link)).statusCode).toBe(400);
      const again = await upgrade(t, anon.token, `again-${Date.now()}@example.com`);
      expect(again.statusCode).toBe(409);
      expect(again.json().error.code).toBe('NOT_ANONYMOUS');
    });
  });

  describe('auth.require_email_verification: false', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp();
    });
    afterAll(() => t?.close());

    it('a user a passkey made permanent gets an email and password once, keeping its id and passkey', async () => {
      const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
        userId: string;
        token: string;
      };
      const authenticator = createSoftAuthenticator();
      await addPasskey(t.app, anon.token, authenticator);

      const email = `later-${Date.now()}@example.com`;
      const res = await upgrade(t, anon.token, email);
      expect(res.statusCode).toBe(201);
      expect(res.json().userId).toBe(anon.userId);
      expect(await userRow(t, anon.userId)).toEqual({ email, email_verified: false, is_anonymous: false });
      expect((await login(t, email)).json().userId).toBe(anon.userId);
      expect((await postAuthentication(t.app, await assertion(t.app, authenticator))).json().userId).toBe(anon.userId);

      const again = await upgrade(t, anon.token, `again-${Date.now()}@example.com`);
      expect(again.statusCode).toBe(409);
      expect(again.json().error.code).toBe('NOT_ANONYMOUS');
      const creds = await t.db.query(
        "SELECT 1 FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential'",
        [anon.userId],
      );
      expect(creds.rows).toHaveLength(1);
    });

    it('after a passkey, adding a password takes a recent sign-in: an old token alone adds no way in', async () => {
      const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
        userId: string;
        token: string;
      };
      const authenticator = createSoftAuthenticator();
      await addPasskey(t.app, anon.token, authenticator);
      await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 day' WHERE user_id = $1`, [anon.userId]);
      const stale = await upgrade(t, anon.token, `stale-${Date.now()}@example.com`);
      expect([stale.statusCode, stale.json().error?.code]).toEqual([403, 'REAUTH_REQUIRED']);
      expect((await userRow(t, anon.userId))?.email).toMatch(/@anonymous\.invalid$/);

      const fresh = await postAuthentication(t.app, await assertion(t.app, authenticator));
      const res = await upgrade(t, fresh.json().token, `fresh-${Date.now()}@example.com`);
      expect(res.statusCode).toBe(201);
    });

    it('a registered user who added a passkey is still refused (NOT_ANONYMOUS)', async () => {
      const user = await registerUser(t.app);
      await addPasskey(t.app, user.token, createSoftAuthenticator());
      const res = await upgrade(t, user.token, `other-${Date.now()}@example.com`);
      expect(res.statusCode).toBe(409);
      expect(res.json().error.code).toBe('NOT_ANONYMOUS');
    });
  });
});
