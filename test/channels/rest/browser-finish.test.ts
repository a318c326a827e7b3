import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBrowserFinish } from '../../../src/channels/rest/browser-finish.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// How a browser sign-in (OAuth, magic link) ends: a one-time code for the session it made.
describe('browser sign-in finish', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  // Regression: a session ended (revoked, its account deleted) between the sign-in and the code broke the codes'
  // foreign key (23503), answered 500 INTERNAL_ERROR.
  it('refuses a session that ended before its code was minted, with no code and no 500', async () => {
    const user = await registerUser(t.app);
    const { rows } = await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [user.userId]);
    const sessionId = rows[0]?.id as string;
    await t.db.query('DELETE FROM users WHERE id = $1', [user.userId]);
    for (const redirectUrl of ['', 'https://app.example.com/signed-in']) {
      const finish = createBrowserFinish(redirectUrl, t.app.exchangeCodes);
      const app = Fastify();
      app.get('/finish', (_request, reply) => finish.success(reply, { sessionId, userId: user.userId }, null));
      try {
        const res = await app.inject({ method: 'GET', url: '/finish' });
        if (redirectUrl) {
          expect(res.statusCode).toBe(302);
          const location = new URL(res.headers.location as string);
          expect([location.searchParams.get('error'), location.searchParams.get('code')]).toEqual([
            'INVALID_TOKEN',
            null,
          ]);
        } else {
          expect([res.statusCode, res.json().error?.code]).toEqual([401, 'INVALID_TOKEN']);
        }
        expect(res.headers['cache-control']).toBe('no-store');
      } finally {
        await app.close();
      }
    }
    const { rows: codes } = await t.db.query('SELECT 1 FROM auth_exchange_codes WHERE session_id = $1', [sessionId]);
    expect(codes).toEqual([]);
  });
});
