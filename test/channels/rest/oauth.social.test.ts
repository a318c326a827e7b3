import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statementsWaitingForALock } from '../../helpers/db-locks.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// Google and GitHub cannot be reached from here: these tests stop at the authorize redirect the gateway builds.
const BASE = 'http://localhost:3000';

describe('Google and GitHub providers', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        oauth: {
          redirect_url: 'http://localhost:5173/signed-in',
          google: { client_id: 'google-client-id.apps.googleusercontent.com', client_secret: 'google-secret' },
          github: { client_id: 'Iv1.github-client-id', client_secret: 'github-secret' },
        },
      },
    });
  });
  afterAll(() => t?.close());

  it('GET /auth/oauth/providers lists both, with their start URLs', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/oauth/providers' });
    expect(res.statusCode).toBe(200);
    expect(res.json().providers).toEqual([
      { id: 'google', name: 'Google', kind: 'social', authorizeUrl: `${BASE}/auth/oauth/google` },
      { id: 'github', name: 'GitHub', kind: 'social', authorizeUrl: `${BASE}/auth/oauth/github` },
    ]);
    expect(res.body).not.toContain('secret');
  });

  it.each([
    ['google', 'https://accounts.google.com', 'google-client-id.apps.googleusercontent.com'],
    ['github', 'https://github.com', 'Iv1.github-client-id'],
  ])(
    'GET /auth/oauth/%s redirects to the provider with our client_id, redirect_uri and state',
    async (id, origin, clientId) => {
      const res = await t.app.inject({ method: 'GET', url: `/auth/oauth/${id}` });
      expect(res.statusCode).toBe(302);
      const url = new URL(res.headers.location as string);
      expect(url.origin).toBe(origin);
      expect(url.searchParams.get('client_id')).toBe(clientId);
      expect(url.searchParams.get('redirect_uri')).toBe(`${BASE}/api/auth/callback/${id}`);
      expect(url.searchParams.get('state')).toBeTruthy();
      expect(res.headers.location).not.toContain('secret');
      // Better Auth's state cookie goes to the browser with the redirect.
      expect((res.headers['set-cookie'] as string[]).some((c) => /state/.test(c))).toBe(true);
    },
  );

  it('POST /auth/oauth/link/github (signed in) answers the provider URL', async () => {
    const user = await registerUser(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/auth/oauth/link/github',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(res.statusCode).toBe(200);
    const url = new URL(res.json().url);
    expect(url.origin).toBe('https://github.com');
    expect(url.searchParams.get('redirect_uri')).toBe(`${BASE}/api/auth/callback/github`);
  });

  it('linking needs a recent sign-in (anonymous users excepted): a linked provider is a way in', async () => {
    const user = await registerUser(t.app);
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 hour' WHERE user_id = $1`, [user.userId]);
    const link = (token: string) =>
      t.app.inject({ method: 'POST', url: '/auth/oauth/link/github', headers: { authorization: `Bearer ${token}` } });
    const stale = await link(user.token);
    expect(stale.statusCode).toBe(403);
    expect(stale.json().error.code).toBe('REAUTH_REQUIRED');

    const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json() as {
      userId: string;
      token: string;
    };
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '3 days' WHERE user_id = $1`, [anon.userId]);
    expect((await link(anon.token)).statusCode).toBe(200);
  });

  it('an unconfigured provider is 404 OAUTH_PROVIDER_UNKNOWN; a malformed id is 400', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/oauth/facebook' });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('OAUTH_PROVIDER_UNKNOWN');
    const bad = await t.app.inject({ method: 'GET', url: '/auth/oauth/Bad%20Id' });
    expect(bad.statusCode).toBe(400);
  });

  describe('DELETE /auth/oauth/accounts/:providerId keeps a way in', () => {
    /** A registered user whose password is gone, with these provider accounts and passkeys instead. */
    const passwordlessUser = async (providers: string[], passkeys: string[]) => {
      const user = await registerUser(t.app);
      await t.db.query('DELETE FROM user_credentials WHERE user_id = $1', [user.userId]);
      for (const p of providers) {
        await t.db.query(
          'INSERT INTO user_credentials (id, user_id, account_id, provider_id) VALUES ($1, $2, $3, $4)',
          [`acc_${p}_${user.userId}`, user.userId, `sub-${p}-${user.userId}`, p],
        );
      }
      for (const k of passkeys) {
        await t.db.query(
          `INSERT INTO passkeys (id, user_id, credential_id, credential_public_key) VALUES ($1, $2, $3, 'key')`,
          [`${k}_${user.userId}`, user.userId, `cred_${k}_${user.userId}`],
        );
      }
      return { ...user, auth: { authorization: `Bearer ${user.token}` } };
    };
    /** Passwords, provider accounts and passkeys the user can still sign in with. */
    const waysIn = async (userId: string) => {
      const { rows } = await t.db.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM user_credentials WHERE user_id = $1
                   AND (provider_id <> 'credential' OR password_hash IS NOT NULL))
               + (SELECT count(*) FROM passkeys WHERE user_id = $1))::int AS n`,
        [userId],
      );
      return rows[0]?.n ?? 0;
    };
    const unlink = (provider: string, headers: Record<string, string>) =>
      t.app.inject({ method: 'DELETE', url: `/auth/oauth/accounts/${provider}`, headers });

    /**
     * Runs `race` while another transaction holds the user's credential rows (as a slow commit would): plain reads
     * pass, writes wait. Resolves once `waiting` statements wait for it, then lets them go.
     */
    const holdingCredentials = async <R>(userId: string, waiting: number, race: () => Promise<R>) =>
      t.db.transaction(async (tx) => {
        await tx.query('SELECT 1 FROM user_credentials WHERE user_id = $1 FOR UPDATE', [userId]);
        const started = await race();
        await statementsWaitingForALock(t.db, waiting);
        return started;
      });

    // Regression: unlinks took no lock, so two at once each saw the other provider and both went.
    it('two concurrent unlinks of the last two providers: one is refused, one way in is left', async () => {
      const user = await passwordlessUser(['google', 'github'], []);
      const answers = await Promise.all(
        await holdingCredentials(user.userId, 2, async () => [
          unlink('google', user.auth),
          unlink('github', user.auth),
        ]),
      );
      expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409]);
      expect(answers.find((a) => a.statusCode === 409)?.json().error.code).toBe('LAST_SIGN_IN_METHOD');
      expect(await waysIn(user.userId)).toBe(1);
    });

    // Regression: passkey removal locked the user, unlinking did not, so the three together removed every way in.
    it('removing the passkey while unlinking both providers leaves one way in', async () => {
      const user = await passwordlessUser(['google', 'github'], ['pk']);
      const { removed, unlinks } = await holdingCredentials(user.userId, 2, async () => ({
        removed: await t.app.inject({ method: 'DELETE', url: `/auth/passkeys/pk_${user.userId}`, headers: user.auth }),
        unlinks: [unlink('google', user.auth), unlink('github', user.auth)],
      }));
      const answers = [removed, ...(await Promise.all(unlinks))];
      expect(answers.filter((a) => a.statusCode === 200)).toHaveLength(2);
      expect(await waysIn(user.userId)).toBe(1);
    });

    // Regression: the last-method check counted only user_credentials, not passkeys.
    it('a passwordless user with a passkey can unlink their one provider', async () => {
      const user = await passwordlessUser(['google'], ['pk']);
      const res = await unlink('google', user.auth);
      expect(res.statusCode, res.body).toBe(200);
      expect(await waysIn(user.userId)).toBe(1);
      const { rows } = await t.db.query(
        `SELECT 1 FROM auth_audit_log WHERE user_id = $1 AND event = 'channel.unlinked' AND details->>'provider' = 'google'`,
        [user.userId],
      );
      expect(rows).toHaveLength(1);
    });

    it('keeps its answers: not linked 404, last way in 409, a session older than a day 403', async () => {
      const user = await passwordlessUser(['google'], []);
      const notLinked = await unlink('github', user.auth);
      expect(notLinked.statusCode).toBe(404);
      expect(notLinked.json().error.code).toBe('OAUTH_ACCOUNT_NOT_FOUND');
      const last = await unlink('google', user.auth);
      expect(last.statusCode).toBe(409);
      expect(last.json().error.code).toBe('LAST_SIGN_IN_METHOD');

      // A credential row without a password is no way in.
      await t.db.query(
        `INSERT INTO user_credentials (id, user_id, account_id, provider_id) VALUES ($1, $2, $2, 'credential')`,
        [`cred_${user.userId}`, user.userId],
      );
      expect((await unlink('google', user.auth)).statusCode).toBe(409);

      const withPassword = await registerUser(t.app);
      await t.db.query(
        `INSERT INTO user_credentials (id, user_id, account_id, provider_id) VALUES ($1, $2, $3, 'google')`,
        [`acc_${withPassword.userId}`, withPassword.userId, `sub-${withPassword.userId}`],
      );
      await t.db.query(`UPDATE sessions SET created_at = now() - interval '25 hours' WHERE user_id = $1`, [
        withPassword.userId,
      ]);
      const stale = await unlink('google', { authorization: `Bearer ${withPassword.token}` });
      expect(stale.statusCode).toBe(403);
      expect(stale.json().error.code).toBe('SESSION_NOT_FRESH');
      expect(await waysIn(withPassword.userId)).toBe(2);
    });
  });
});
