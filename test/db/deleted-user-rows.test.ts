import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

// Regression: verification_tokens has no foreign key to users, so deleting an account left its rows behind: an
// anonymous user's pending upgrade (the address it asked for and its password's argon2id hash) and its unused
// verification link (the user id and the address), for up to 30 days.
describe('a deleted user leaves no verification row behind', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { require_email_verification: true } } });
  });
  afterAll(() => t?.close());

  const rowsOf = async (userId: string) =>
    (
      await t.db.query<{ identifier: string }>(
        `SELECT identifier FROM verification_tokens
          WHERE split_part(token, E'\\n', 1) = $1 OR identifier = 'anonymous-upgrade:' || $1`,
        [userId],
      )
    ).rows;

  it('POST /auth/account/delete of an anonymous user waiting for its upgrade link', async () => {
    const anon = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    const { userId, token } = anon.json() as { userId: string; token: string };
    const upgrade = await t.app.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${token}` },
      payload: { email: `leftover-${randomUUID()}@example.com`, password: 'SecurePassword123!' },
    });
    expect(upgrade.statusCode).toBe(201);
    // The pending upgrade at once, the verification link after the answer.
    await expect.poll(async () => (await rowsOf(userId)).length).toBe(2);

    const deleted = await t.app.inject({
      method: 'POST',
      url: '/auth/account/delete',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(deleted.statusCode).toBe(200);
    expect(await rowsOf(userId)).toEqual([]);
  });

  it('any delete of users, several at once, and other users keep theirs', async () => {
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (const id of ids) {
      await t.db.query(`INSERT INTO users (id, email, name) VALUES ($1, $2, 'x')`, [id, `${id}@example.com`]);
      await t.db.query(
        `INSERT INTO verification_tokens (id, identifier, token, expires_at)
         VALUES ($1, $2, $3, now() + interval '1 hour'), ($4, $5, $6, now() + interval '1 hour')`,
        [randomUUID(), `reset-password:${id}`, id, randomUUID(), `email-verification:${id}`, `${id}\nx@example.com`],
      );
    }
    await t.db.query('DELETE FROM users WHERE id = ANY($1)', [ids.slice(0, 2)]);
    expect(await rowsOf(ids[0] as string)).toEqual([]);
    expect(await rowsOf(ids[1] as string)).toEqual([]);
    expect(await rowsOf(ids[2] as string)).toHaveLength(2);
  });
});
