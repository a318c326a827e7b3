import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { addPasskey, assertion, postAuthentication } from './helpers.js';

// Issue 6 item 5: registering a passkey upgrades an anonymous trial user, keeping its id.
describe('a passkey upgrades an anonymous user', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

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
