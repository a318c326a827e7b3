import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionStore } from '../../src/authenticator/session.store.js';
import type { Queryable } from '../../src/db/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a signed token of an ended session was read from the database on every check, without limit, on the
// rate-limit-exempt GET /auth/session (the session cache keeps only sessions found).
describe('session lookups: a session without a row is remembered as gone', () => {
  let t: TestApp;
  let queries = 0;
  let counting: Queryable;
  beforeAll(async () => {
    t = await createTestApp({ config: { rate_limit: { enabled: true } } });
    counting = {
      query: ((sql: string, params?: readonly unknown[]) => {
        queries++;
        return t.db.query(sql, params);
      }) as Queryable['query'],
    };
  });
  afterAll(() => t?.close());

  const insertSession = async (userId: string, expiresAt: string) => {
    const id = `sess_gone_${Math.random().toString(36).slice(2)}`;
    await t.db.query(`INSERT INTO sessions (id, token, user_id, expires_at) VALUES ($1, $1, $2, ${expiresAt})`, [
      id,
      userId,
    ]);
    return id;
  };

  it('a logged-out token on GET /auth/session costs one database read, then none', async () => {
    const user = await registerUser(t.app);
    const logout = await t.app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(logout.statusCode).toBe(200);
    const query = t.db.query.bind(t.db);
    let reads = 0;
    (t.db as { query: typeof query }).query = ((...args: Parameters<typeof query>) => {
      reads++;
      return query(...args);
    }) as typeof query;
    try {
      for (let i = 0; i < 50; i++) {
        const r = await t.app.inject({
          method: 'GET',
          url: '/auth/session',
          headers: { authorization: `Bearer ${user.token}` },
        });
        expect(r.statusCode).toBe(401);
      }
    } finally {
      (t.db as { query: typeof query }).query = query;
    }
    expect(reads).toBeLessThanOrEqual(1);
  });

  it('a missing id is read once; an expired session or a disabled user is read every time, and may come back', async () => {
    const user = await registerUser(t.app);
    const expired = await insertSession(user.userId, "now() - interval '1 second'");
    const store = createSessionStore(counting);
    try {
      queries = 0;
      expect(await store.findActive('sess_never_existed')).toBeNull();
      expect(await store.findActive('sess_never_existed')).toBeNull();
      expect(queries).toBe(1);
      expect(store.goneSessions).toBe(1);

      queries = 0;
      expect(await store.findActive(expired)).toBeNull();
      expect(await store.findActive(expired)).toBeNull();
      expect(queries).toBe(2);
      await t.db.query("UPDATE sessions SET expires_at = now() + interval '1 hour' WHERE id = $1", [expired]);
      expect((await store.findActive(expired))?.userId).toBe(user.userId);

      await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
      expect(await store.findActive(expired)).toBeNull();
      await t.db.query('UPDATE users SET disabled_at = NULL WHERE id = $1', [user.userId]);
      expect((await store.findActive(expired))?.userId).toBe(user.userId);
      expect(store.goneSessions).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('a batch with found and missing ids remembers only the missing ones', async () => {
    const user = await registerUser(t.app);
    const live = await insertSession(user.userId, "now() + interval '1 hour'");
    const store = createSessionStore(counting);
    try {
      const found = await Promise.all([
        store.findActive(live),
        store.findActive('sess_missing_a'),
        store.findActive(live),
      ]);
      expect(found.map((s) => s?.id ?? null)).toEqual([live, null, live]);
      expect(store.goneSessions).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('bounded: at most max ids, each for ttlMs', async () => {
    const store = createSessionStore(counting, { goneSessions: { max: 3, ttlMs: 200 } });
    try {
      for (let i = 0; i < 5; i++) await store.findActive(`sess_missing_${i}`);
      expect(store.goneSessions).toBe(3);
      queries = 0;
      await store.findActive('sess_missing_4'); // among the newest: remembered
      await store.findActive('sess_missing_0'); // the oldest went first: read again
      expect(queries).toBe(1);
      await new Promise((r) => setTimeout(r, 250));
      await store.findActive('sess_missing_4');
      expect(queries).toBe(2);
    } finally {
      await store.close();
    }
  });
});
