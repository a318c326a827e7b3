import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestApp,
  createTestDatabase,
  registerUser,
  type TestApp,
  type TestDatabase,
} from './helpers/test-app.js';

// One database for the file (each app below gets its own config on it): fewer embedded databases to start.
let shared: TestDatabase;
beforeAll(async () => {
  shared = await createTestDatabase();
});
afterAll(() => shared?.drop());

describe('session idle timeout (auth.session.idle_timeout)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      shared,
      // No session cache: these tests move last_used_at in the database and expect the next request to see it.
      config: { auth: { session: { idle_timeout: 3600 }, session_cache: { ttl: 0 } } },
    });
  });
  afterAll(() => t?.close());

  const session = (token: string) =>
    t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  const sessionIdOf = async (token: string) => (await session(token)).json().session.id as string;
  const setLastUsed = async (id: string, ago: string) => {
    await t.app.sessions.flushUses(); // uses already made are written (behind) first; then the clock moves back
    await t.db.query(`UPDATE sessions SET last_used_at = now() - $2::interval WHERE id = $1`, [id, ago]);
  };
  const secondsSinceUse = async (id: string) =>
    Number(
      (
        await t.db.query<{ s: string }>(
          'SELECT extract(epoch FROM now() - last_used_at)::int AS s FROM sessions WHERE id = $1',
          [id],
        )
      ).rows[0]?.s,
    );

  it("an idle session is no session on Better Auth's routes either, whatever the credential", async () => {
    const user = await registerUser(t.app);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
      payload: JSON.stringify({ email: user.email, password: user.password }),
    });
    const cookie = ([] as string[])
      .concat(signIn.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .filter((c) => c.startsWith('better-auth.'))
      .join('; ');
    const raw = signIn.json().token as string;
    const getSession = (headers: Record<string, string>) => t.app.inject({ url: '/api/auth/get-session', headers });
    const credentials: Array<Record<string, string>> = [{ cookie }, { authorization: `Bearer ${raw}` }];
    for (const headers of credentials) {
      expect((await getSession(headers)).json()).toMatchObject({ user: { id: user.userId } });
    }
    const { rows } = await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE token = $1', [raw]);
    await setLastUsed(rows[0]?.id as string, '2 hours');
    for (const headers of credentials) {
      const res = await getSession(headers);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toBeNull();
    }
  });

  it('refuses a session unused for longer than the idle timeout, on /auth/* and /api/auth/*', async () => {
    const user = await registerUser(t.app);
    const id = await sessionIdOf(user.token);
    await setLastUsed(id, '2 hours');
    const res = await session(user.token);
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('INVALID_TOKEN');
    const api = await t.app.inject({
      url: '/api/auth/get-session',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(api.statusCode).toBe(401);
    // A refused use is not recorded: the session stays idle.
    await t.app.sessions.flushUses();
    expect(await secondsSinceUse(id)).toBeGreaterThanOrEqual(7199);
    expect((await session(user.token)).statusCode).toBe(401);
  });

  it('records use at most once a minute', async () => {
    const user = await registerUser(t.app);
    const id = await sessionIdOf(user.token);
    await setLastUsed(id, '5 minutes');
    expect((await session(user.token)).statusCode).toBe(200);
    await t.app.sessions.flushUses(); // uses are written behind, about once a second
    expect(await secondsSinceUse(id)).toBeLessThan(60);
    await setLastUsed(id, '30 seconds');
    expect((await session(user.token)).statusCode).toBe(200);
    await t.app.sessions.flushUses();
    expect(await secondsSinceUse(id)).toBeGreaterThanOrEqual(29); // not rewritten within the minute
  });
});

describe('idle timeout off (0, the default)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ shared });
  });
  afterAll(() => t?.close());

  it('keeps a long-unused session until it expires', async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE sessions SET last_used_at = now() - interval '6 days' WHERE user_id = $1`, [user.userId]);
    const res = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${user.token}` } });
    expect(res.statusCode).toBe(200);
  });
});
