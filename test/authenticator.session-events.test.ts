import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionEnded } from '../src/authenticator/index.js';
import { createTestApp, registerUser, type TestApp } from './helpers/test-app.js';

describe('session-ended events (trigger + LISTEN/NOTIFY)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const next = () =>
    new Promise<SessionEnded>((resolve) => {
      const off = t.app.sessionEvents.onSessionEnded((e) => {
        off();
        resolve(e);
      });
    });

  it('fires on logout with the session and user id', async () => {
    const { token, userId } = await registerUser(t.app);
    const event = next();
    await t.app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${token}` } });
    expect(await event).toMatchObject({ userId });
  });

  it('fires when the user is deleted (ON DELETE CASCADE)', async () => {
    const { userId } = await registerUser(t.app);
    const event = next();
    await t.db.query('DELETE FROM users WHERE id = $1', [userId]);
    expect(await event).toMatchObject({ userId });
  });
});
