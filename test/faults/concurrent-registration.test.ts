import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

// The same email registered 50 times at once (with case and space variants): exactly one account. The other 50x cases
// of the issue (one link code, one passkey challenge, one reset token used 50 times) live with their features.
describe('concurrency: one email, 50 parallel registrations', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('exactly one 201, every other answer 409 EMAIL_TAKEN, one users row and one credential', async () => {
    const variants = ['race@example.com', 'Race@Example.com', ' race@example.com ', 'RACE@EXAMPLE.COM'];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        t.app.inject({
          method: 'POST',
          url: '/auth/register',
          payload: { email: variants[i % variants.length], password: 'SecurePassword123!', name: `racer ${i}` },
        }),
      ),
    );
    const statuses = results.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(49);
    for (const r of results.filter((r) => r.statusCode === 409)) expect(r.json().error.code).toBe('EMAIL_TAKEN');

    const users = await t.db.query<{ id: string }>(`SELECT id FROM users WHERE lower(email) = 'race@example.com'`);
    expect(users.rows).toHaveLength(1);
    const userId = users.rows[0]?.id;
    const creds = await t.db.query('SELECT 1 FROM user_credentials WHERE user_id = $1', [userId]);
    expect(creds.rows).toHaveLength(1);
    const sessions = await t.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [userId]);
    expect(sessions.rows).toHaveLength(1);
    // The winner's token works.
    const winner = results.find((r) => r.statusCode === 201)?.json() as { token: string };
    const me = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${winner.token}` },
    });
    expect(me.statusCode).toBe(200);
  });
});
