import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: a bearer call to /api/auth/* that was due extended the session row, but its renewed token was dropped
// (app.ts mountedSession kept only the ids), so the client was signed out at its old token's exp.
describe('sliding renewal through a bearer call to the Better Auth mount', () => {
  const APP = 'https://app.example';
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { server: { trusted_origins: [APP] } } });
  });
  afterAll(() => t?.close());

  const expOf = (token: string) =>
    (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }).exp * 1000;
  /** A user whose session is `ageSeconds` old, and the token a client holds for it (it expires with the session). */
  const sessionAged = async (ageSeconds: number) => {
    const user = await registerUser(t.app);
    const { rows } = await t.db.query<{ id: string; expires_at: Date }>(
      `UPDATE sessions SET expires_at = now() + make_interval(secs => $2) WHERE user_id = $1 RETURNING id, expires_at`,
      [user.userId, t.config.auth.session.expires_in - ageSeconds],
    );
    const row = rows[0] as { id: string; expires_at: Date };
    return { ...user, token: t.app.authenticator.issueToken(user.userId, row.id, new Date(row.expires_at)) };
  };
  const due = () => sessionAged(t.config.auth.session.update_age + 60);
  const getSession = (token: string, headers: Record<string, string> = {}) =>
    t.app.inject({ url: '/api/auth/get-session', headers: { authorization: `Bearer ${token}`, ...headers } });

  it('a due call hands the renewed token back in X-Auth-Token, exposed to a trusted origin', async () => {
    const user = await due();
    const res = await getSession(user.token, { origin: APP });
    expect(res.statusCode).toBe(200);
    const renewed = res.headers['x-auth-token'];
    expect(typeof renewed).toBe('string');
    const { expires_in: expiresIn } = t.config.auth.session;
    expect(expOf(renewed as string)).toBeGreaterThan(Date.now() + (expiresIn - 60) * 1000);
    expect(expOf(renewed as string)).toBeGreaterThan(expOf(user.token));
    expect(String(res.headers['access-control-expose-headers'])).toContain('X-Auth-Token');
    // The renewed token works, on the mount and on /auth/*.
    expect((await getSession(renewed as string)).json().session.userId).toBe(user.userId);
    const session = await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${renewed}` } });
    expect(session.statusCode).toBe(200);
  });

  it('a call that is not due hands out no token', async () => {
    const user = await sessionAged(60);
    const res = await getSession(user.token);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-auth-token']).toBeUndefined();
  });

  it('a due sign-out hands out no token for the session it ended', async () => {
    const user = await due();
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-out',
      headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
      payload: '{}',
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-auth-token']).toBeUndefined();
  });
});
