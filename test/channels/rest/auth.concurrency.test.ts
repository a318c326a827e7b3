import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../../helpers/test-app.js';

/** `n` registrations of one address at once, its spelling alternating between two cases. */
const registerAtOnce = (t: TestApp, n: number) =>
  Promise.all(
    Array.from({ length: n }, (_, i) =>
      t.app.inject({
        method: 'POST',
        url: '/auth/register',
        payload: {
          email: i % 2 ? 'Race@Example.com' : 'race@example.com',
          password: 'SecurePassword123!',
          name: `r${i}`,
        },
      }),
    ),
  );

describe('concurrent registrations of one email', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('20 at once (mixed case): exactly one 201, the rest 409 EMAIL_TAKEN, one users row, no 500', async () => {
    const responses = await registerAtOnce(t, 20);
    const statuses = responses.map((r) => r.statusCode).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    for (const r of responses.filter((x) => x.statusCode === 409)) expect(r.json().error.code).toBe('EMAIL_TAKEN');
    const { rows } = await t.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM users WHERE lower(email) = 'race@example.com'",
    );
    expect(rows[0]?.n).toBe(1);
    const creds = await t.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM user_credentials c JOIN users u ON u.id = c.user_id WHERE lower(u.email) = 'race@example.com'",
    );
    expect(creds.rows[0]?.n).toBe(1);
  });
});

// Regression: with verification required, a sign-up that lost the race to the unique index answered 409 EMAIL_TAKEN,
// where a taken address gets the same 201 as a new one: a burst of one address told whether it was new.
describe('concurrent registrations of one email with auth.require_email_verification', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { auth: { require_email_verification: true } } });
  });
  afterAll(() => t?.close());

  it('6 at once: every answer is the 201 of a new address, one users row', async () => {
    const responses = await registerAtOnce(t, 6);
    for (const r of responses) {
      expect(r.statusCode, r.body).toBe(201);
      expect(r.json()).toEqual({ success: true, userId: expect.any(String), verificationRequired: true });
    }
    const { rows } = await t.db.query<{ id: string }>("SELECT id FROM users WHERE lower(email) = 'race@example.com'");
    expect(rows).toHaveLength(1);
    // The losers' ids are made up, as for a taken address: none names the account to anyone but its registrant.
    const ids = responses.map((r) => r.json().userId);
    expect(ids.filter((id) => id === rows[0]?.id)).toHaveLength(1);
  });

  // Regression: Better Auth's own sign-up route, which the mount serves, answered the losers of the unique index
  // 422 FAILED_TO_CREATE_USER, where every sign-up of a taken address gets 200: two requests at once told them apart.
  it("Better Auth's /sign-up/email, 6 at once: every answer is the 200 a taken address gets, one users row", async () => {
    const signUpAtOnce = (email: string, n: number) =>
      Promise.all(
        Array.from({ length: n }, () =>
          t.app.inject({
            method: 'POST',
            url: '/api/auth/sign-up/email',
            headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
            payload: JSON.stringify({ email, password: 'SecurePassword123!', name: 'Someone' }),
          }),
        ),
      );
    await signUpAtOnce('mount-taken@example.com', 1);
    const taken = await signUpAtOnce('mount-taken@example.com', 1);
    const fresh = await signUpAtOnce('mount-race@example.com', 6);
    const shape = (r: (typeof fresh)[number]) => [
      r.statusCode,
      r.json().token,
      Object.keys(r.json().user ?? {}).sort(),
    ];
    for (const r of fresh) expect(shape(r), r.body).toEqual(shape(taken[0] as (typeof fresh)[number]));
    const { rows } = await t.db.query<{ id: string }>(
      "SELECT id FROM users WHERE lower(email) = 'mount-race@example.com'",
    );
    expect(rows).toHaveLength(1);
    // The losers' ids are made up, as for a taken address.
    expect(fresh.filter((r) => r.json().user.id === rows[0]?.id)).toHaveLength(1);
  });
});
