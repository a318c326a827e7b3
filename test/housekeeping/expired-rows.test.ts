import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: expired sessions and verification tokens were never deleted; every sign-in and every emailed link
// left a row behind for good.
describe('the purge of expired rows', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const session = (token: string) =>
    t.app.inject({ method: 'GET', url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  const sessionIdOf = async (userId: string) =>
    (await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [userId])).rows[0]?.id as string;
  const addToken = (identifier: string, expiresIn: string) =>
    t.db.query(
      `INSERT INTO verification_tokens (id, identifier, token, expires_at) VALUES ($1, $2, 'x', now() + $3::interval)`,
      [randomUUID(), identifier, expiresIn],
    );
  const tokensLeft = async (prefix: string) =>
    (
      await t.db.query<{ identifier: string }>(
        'SELECT identifier FROM verification_tokens WHERE starts_with(identifier, $1) ORDER BY identifier',
        [prefix],
      )
    ).rows.map((r) => r.identifier);

  it('deletes expired sessions, announcing each end, and keeps live ones working', async () => {
    const live = await registerUser(t.app);
    const gone = await registerUser(t.app);
    const goneSession = await sessionIdOf(gone.userId);
    await t.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, [goneSession]);
    const ended: string[] = [];
    const stop = t.app.sessionEvents.onSessionEnded((event) => {
      ended.push(event.sessionId);
    });

    const counts = await t.app.purgeExpiredRows();

    expect(counts.sessions).toBeGreaterThanOrEqual(1);
    expect(await sessionIdOf(gone.userId)).toBeUndefined();
    expect(await sessionIdOf(live.userId)).toBeDefined();
    expect((await session(live.token)).statusCode).toBe(200);
    expect((await session(gone.token)).json().error.code).toBe('INVALID_TOKEN');
    await expect.poll(() => ended).toContain(goneSession);
    stop();
  });

  it('deletes verification tokens an hour past expiry, in batches, and keeps younger ones', async () => {
    const prefix = `purge-test-${randomUUID()}:`;
    // Over two batches of 1,000, so the loop must go round.
    await t.db.query(
      `INSERT INTO verification_tokens (id, identifier, token, expires_at)
         SELECT gen_random_uuid()::text, $1 || 'old-' || lpad(n::text, 4, '0'), 'x', now() - interval '2 hours'
           FROM generate_series(1, 2100) AS n`,
      [prefix],
    );
    await addToken(`${prefix}just-expired`, '-10 minutes');
    await addToken(`${prefix}live`, '10 minutes');

    const counts = await t.app.purgeExpiredRows();

    expect(counts.verification_tokens).toBeGreaterThanOrEqual(2100);
    expect(await tokensLeft(prefix)).toEqual([`${prefix}just-expired`, `${prefix}live`]);
  });

  it('runs in several processes at once without a deadlock or an error', async () => {
    const prefix = `purge-race-${randomUUID()}:`;
    await t.db.query(
      `INSERT INTO verification_tokens (id, identifier, token, expires_at)
         SELECT gen_random_uuid()::text, $1 || n, 'x', now() - interval '2 hours' FROM generate_series(1, 3000) AS n`,
      [prefix],
    );
    const results = await Promise.all([t.app.purgeExpiredRows(), t.app.purgeExpiredRows(), t.app.purgeExpiredRows()]);
    expect(results.reduce((sum, r) => sum + r.verification_tokens, 0)).toBeGreaterThanOrEqual(3000);
    expect(await tokensLeft(prefix)).toEqual([]);
  });
});
