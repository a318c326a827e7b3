import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizeAtProvider, CookieJar, type OidcProvider, startOidcProvider } from '../../helpers/oidc-provider.js';
import { pkcePair } from '../../helpers/pkce.js';
import { createSiblingApp } from '../../helpers/sibling-app.js';
import { type SmtpSink, startSmtpSink } from '../../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

// A real OpenID Connect provider (oidc-provider) on 127.0.0.1; the gateway runs in-process (inject) at its default
// base_url, http://localhost:3000, which is the redirect_uri registered at the provider.
const BASE = 'http://localhost:3000';
const FRONT = 'http://localhost:5173/signed-in';

/** The gateway under test, or a sibling with other settings on its database. */
type Gateway = Pick<TestApp['app'], 'inject'>;

describe('OAuth / OIDC sign-in against a real provider', () => {
  let idp: OidcProvider;
  let t: TestApp;

  beforeAll(async () => {
    idp = await startOidcProvider({ redirectUris: [`${BASE}/api/auth/callback/corp`] });
    t = await createTestApp({
      config: {
        oauth: {
          redirect_url: FRONT,
          oidc: {
            corp: {
              issuer: idp.issuer,
              client_id: idp.clientId,
              client_secret: idp.clientSecret,
              name: 'Corp SSO',
              scopes: ['openid', 'email', 'profile'],
              token_auth: 'client_secret_basic',
            },
          },
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await idp?.close();
  });

  /** GET /auth/oauth/corp, with an optional bearer (link) or start URL; returns the jar and the provider URL. */
  const start = async (query = '', jar = new CookieJar(), app: Gateway = t.app) => {
    const res = await app.inject({
      method: 'GET',
      url: `/auth/oauth/corp${query}`,
      headers: { cookie: jar.header() },
    });
    expect(res.statusCode).toBe(302);
    jar.store(res.headers['set-cookie'] as string[]);
    return { jar, authorizeUrl: new URL(res.headers.location as string) };
  };
  /** Delivers the provider's redirect to the gateway's callback, then follows to /auth/oauth/complete. */
  const finish = async (jar: CookieJar, callback: URL, app: Gateway = t.app) => {
    const cb = await app.inject({
      method: 'GET',
      url: `${callback.pathname}${callback.search}`,
      headers: { cookie: jar.header() },
    });
    expect(cb.statusCode).toBe(302);
    jar.store(cb.headers['set-cookie'] as string[]);
    const next = new URL(cb.headers.location as string, BASE);
    expect(next.origin + next.pathname).toMatch(/\/auth\/oauth\/(complete|linked)$/);
    const done = await app.inject({
      method: 'GET',
      url: `${next.pathname}${next.search}`,
      headers: { cookie: jar.header() },
    });
    expect(done.statusCode).toBe(302);
    return { callback: cb, done, front: new URL(done.headers.location as string) };
  };
  const exchange = (code: string, codeVerifier?: string, app: Gateway = t.app) =>
    app.inject({ method: 'POST', url: '/auth/oauth/exchange', payload: { code, codeVerifier } });
  const session = (token: string) =>
    t.app.inject({ method: 'GET', url: '/auth/session', headers: { authorization: `Bearer ${token}` } });
  const signIn = async (accountId: string, app: Gateway = t.app) => {
    const { jar, authorizeUrl } = await start('', new CookieJar(), app);
    return finish(jar, await authorizeAtProvider(authorizeUrl.toString(), accountId), app);
  };
  /** The signed-in user links the provider account `accountId` (POST /auth/oauth/link/corp, then the provider). */
  const linkFromSession = async (token: string, accountId: string, app: Gateway = t.app) => {
    const link = await app.inject({
      method: 'POST',
      url: '/auth/oauth/link/corp',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(link.statusCode).toBe(200);
    const jar = new CookieJar();
    jar.store(link.headers['set-cookie'] as string[]);
    return finish(jar, await authorizeAtProvider(link.json().url, accountId), app);
  };
  const countSessions = async () =>
    Number((await t.db.query<{ n: string }>('SELECT count(*) AS n FROM sessions')).rows[0]?.n);

  it('authorization code + PKCE + state: sign-in -> one-time code -> exchange -> GET /auth/session', async () => {
    idp.accounts.alice = { email: 'alice@corp.example', email_verified: true, name: 'Alice' };
    const { jar, authorizeUrl } = await start();
    expect(authorizeUrl.origin).toBe(new URL(idp.issuer).origin);
    const q = authorizeUrl.searchParams;
    expect(q.get('client_id')).toBe(idp.clientId);
    expect(q.get('redirect_uri')).toBe(`${BASE}/api/auth/callback/corp`);
    expect(q.get('response_type')).toBe('code');
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[\w-]{43}$/);
    expect(q.get('state')).toBeTruthy();

    const callback = await authorizeAtProvider(authorizeUrl.toString(), 'alice');
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    const { done, front } = await finish(jar, callback);
    expect(front.origin + front.pathname).toBe(FRONT);
    expect(front.searchParams.get('token')).toBeNull();
    const code = front.searchParams.get('code') as string;
    expect(code).toMatch(/^[\w-]{43}$/);
    // The browser keeps no Better Auth session cookie: the front end holds the JWT.
    const cleared = (done.headers['set-cookie'] as string[]).find((c) => c.startsWith('better-auth.session_token='));
    expect(cleared).toMatch(/Max-Age=0/);

    const ex = await exchange(code);
    expect(ex.statusCode).toBe(200);
    const { userId, token } = ex.json();
    const me = await session(token);
    expect(me.statusCode).toBe(200);
    expect(me.json().user).toEqual({ id: userId, email: 'alice@corp.example', name: 'Alice' });

    // Single use; only the hash is stored.
    const again = await exchange(code);
    expect(again.statusCode).toBe(400);
    expect(again.json().error.code).toBe('EXCHANGE_CODE_INVALID');
    const stored = await t.db.query('SELECT 1 FROM auth_exchange_codes WHERE code_hash = $1', [code]);
    expect(stored.rows).toHaveLength(0);

    // Signing in again with the same provider account finds the same user.
    const second = await signIn('alice');
    const ex2 = await exchange(second.front.searchParams.get('code') as string);
    expect(ex2.json().userId).toBe(userId);
  });

  it('a code bound to the front end (codeChallenge) is exchanged only with its verifier: a planted code signs no one in', async () => {
    idp.accounts.bound = { email: 'bound@corp.example', email_verified: true, name: 'Bound' };
    const { verifier, challenge } = pkcePair();
    const boundSignIn = async (query = `?codeChallenge=${challenge}`) => {
      const { jar, authorizeUrl } = await start(query);
      const { front, done } = await finish(jar, await authorizeAtProvider(authorizeUrl.toString(), 'bound'));
      // The challenge cookie is spent by the completion, whatever its outcome.
      const spent = (done.headers['set-cookie'] as string[]).find((c) => c.startsWith('gateway.oauth_challenge='));
      expect(spent).toMatch(/Max-Age=0/);
      return { jar, code: front.searchParams.get('code') as string };
    };

    // The challenge rides in a cookie only the completion route is sent, for as long as a state cookie lives.
    const started = await t.app.inject({ method: 'GET', url: `/auth/oauth/corp?codeChallenge=${challenge}` });
    const cookie = (started.headers['set-cookie'] as string[]).find((c) => c.startsWith('gateway.oauth_challenge='));
    expect(cookie).toBe(
      `gateway.oauth_challenge=${challenge}; Max-Age=600; Path=/auth/oauth/complete; HttpOnly; SameSite=Lax`,
    );

    // Its own verifier exchanges it.
    const ok = await exchange((await boundSignIn()).code, verifier);
    expect(ok.statusCode).toBe(200);
    expect((await session(ok.json().token)).json().user.email).toBe('bound@corp.example');

    // Without the verifier, or with another one: refused, and the code is spent (no second guess).
    const planted = (await boundSignIn()).code;
    expect((await exchange(planted)).json().error.code).toBe('EXCHANGE_CODE_INVALID');
    expect((await exchange(planted, verifier)).json().error.code).toBe('EXCHANGE_CODE_INVALID');
    const guessed = (await boundSignIn()).code;
    expect((await exchange(guessed, pkcePair().verifier)).json().error.code).toBe('EXCHANGE_CODE_INVALID');
    expect((await exchange(guessed, verifier)).json().error.code).toBe('EXCHANGE_CODE_INVALID');

    // A front end that sent a challenge refuses an unbound code (one minted in an attacker's browser without one).
    const unbound = (await boundSignIn('')).code;
    const refused = await exchange(unbound, verifier);
    expect(refused.statusCode).toBe(400);
    expect(refused.json().error.code).toBe('EXCHANGE_CODE_INVALID');

    // A start without a challenge clears one an abandoned start left: that sign-in is unbound.
    const jar = new CookieJar();
    await start(`?codeChallenge=${challenge}`, jar);
    expect(jar.has('gateway.oauth_challenge')).toBe(true);
    const again = await start('', jar);
    expect(again.jar.has('gateway.oauth_challenge')).toBe(false);
    const { front } = await finish(again.jar, await authorizeAtProvider(again.authorizeUrl.toString(), 'bound'));
    expect((await exchange(front.searchParams.get('code') as string)).statusCode).toBe(200);

    // A challenge of the wrong shape (plain method, or a verifier sent by mistake) is refused before anything starts.
    for (const bad of ['short', 'a'.repeat(44), `${'a'.repeat(42)}%2B`]) {
      const res = await t.app.inject({ method: 'GET', url: `/auth/oauth/corp?codeChallenge=${bad}` });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
    const badVerifier = await exchange(planted, 'x'.repeat(20));
    expect(badVerifier.json().error.code).toBe('VALIDATION_FAILED');
  });

  it('a forged state is refused with OAUTH_STATE_INVALID and creates no session', async () => {
    idp.accounts.mallory = { email: 'mallory@corp.example', email_verified: true };
    const before = await countSessions();
    const { jar, authorizeUrl } = await start();
    const callback = await authorizeAtProvider(authorizeUrl.toString(), 'mallory');
    callback.searchParams.set('state', 'forged-state-value-forged-state-value');
    const { front } = await finish(jar, callback);
    expect(front.searchParams.get('error')).toBe('OAUTH_STATE_INVALID');
    expect(front.searchParams.get('code')).toBeNull();
    expect(await countSessions()).toBe(before);
    const users = await t.db.query("SELECT 1 FROM users WHERE email = 'mallory@corp.example'");
    expect(users.rows).toHaveLength(0);
  });

  it('a callback without the state cookie (another browser) is refused', async () => {
    idp.accounts.mallory2 = { email: 'mallory2@corp.example', email_verified: true };
    const before = await countSessions();
    const { authorizeUrl } = await start();
    const callback = await authorizeAtProvider(authorizeUrl.toString(), 'mallory2');
    const { front } = await finish(new CookieJar(), callback);
    expect(front.searchParams.get('error')).toBe('OAUTH_STATE_INVALID');
    expect(await countSessions()).toBe(before);
  });

  it('a response from another issuer (iss mismatch, a mix-up) is refused with OAUTH_ISSUER_MISMATCH', async () => {
    idp.accounts.trent = { email: 'trent@corp.example', email_verified: true };
    const before = await countSessions();
    const { jar, authorizeUrl } = await start();
    const callback = await authorizeAtProvider(authorizeUrl.toString(), 'trent');
    callback.searchParams.set('iss', 'http://127.0.0.1:1/other-issuer');
    const { front } = await finish(jar, callback);
    expect(front.searchParams.get('error')).toBe('OAUTH_ISSUER_MISMATCH');
    expect(await countSessions()).toBe(before);
  });

  it('an unverified provider email matching an existing account is not linked (OAUTH_ACCOUNT_NOT_LINKED)', async () => {
    const existing = await registerUser(t.app, { email: 'bob@corp.example' });
    await t.db.query('UPDATE users SET email_verified = TRUE WHERE id = $1', [existing.userId]);
    idp.accounts.bob = { email: 'bob@corp.example', email_verified: false };
    const { front } = await signIn('bob');
    expect(front.searchParams.get('error')).toBe('OAUTH_ACCOUNT_NOT_LINKED');
    const links = await t.db.query("SELECT 1 FROM user_credentials WHERE user_id = $1 AND provider_id = 'corp'", [
      existing.userId,
    ]);
    expect(links.rows).toHaveLength(0);
  });

  it('without require_email_verification, an unverified provider email with no account signs up (unverified)', async () => {
    idp.accounts.uma = { email: 'uma@corp.example', email_verified: false };
    const { front } = await signIn('uma');
    const ex = await exchange(front.searchParams.get('code') as string);
    expect(ex.statusCode).toBe(200);
    const { rows } = await t.db.query('SELECT email_verified FROM users WHERE id = $1', [ex.json().userId]);
    expect(rows[0]).toEqual({ email_verified: false });
  });

  it('a verified provider email matching a verified account signs in to that account', async () => {
    const existing = await registerUser(t.app, { email: 'carol@corp.example' });
    await t.db.query('UPDATE users SET email_verified = TRUE WHERE id = $1', [existing.userId]);
    idp.accounts.carol = { email: 'carol@corp.example', email_verified: true };
    const { front } = await signIn('carol');
    const ex = await exchange(front.searchParams.get('code') as string);
    expect(ex.json().userId).toBe(existing.userId);
  });

  /** A registered user with a verified email and TOTP turned on (POST /auth/2fa/enable, then /confirm). */
  const twoFactorUser = async (email: string) => {
    const user = await registerUser(t.app, { email });
    await t.db.query('UPDATE users SET email_verified = TRUE WHERE id = $1', [user.userId]);
    const headers = { authorization: `Bearer ${user.token}` };
    const enable = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/enable',
      headers,
      payload: { password: user.password },
    });
    expect(enable.statusCode).toBe(200);
    const totp = OTPAuth.URI.parse(enable.json().otpauthUri) as OTPAuth.TOTP;
    const confirm = await t.app.inject({
      method: 'POST',
      url: '/auth/2fa/confirm',
      headers,
      payload: { code: totp.generate() },
    });
    expect(confirm.statusCode).toBe(200);
    return user;
  };
  const providerAccounts = async (userId: string) =>
    (await t.db.query("SELECT 1 FROM user_credentials WHERE user_id = $1 AND provider_id = 'corp'", [userId])).rows;

  // Regression: a provider account created with the address of a 2FA user was linked to it on its first sign-in, and
  // that sign-in (and every later one) got a full session without the second factor.
  it('a verified provider email matching a 2FA account is not linked (OAUTH_ACCOUNT_NOT_LINKED): no session', async () => {
    const victim = await twoFactorUser('vera@corp.example');
    idp.accounts.vera = { email: 'vera@corp.example', email_verified: true };
    const before = await countSessions();
    const { front } = await signIn('vera');
    expect(front.searchParams.get('error')).toBe('OAUTH_ACCOUNT_NOT_LINKED');
    expect(front.searchParams.get('code')).toBeNull();
    expect(await countSessions()).toBe(before);
    expect(await providerAccounts(victim.userId)).toHaveLength(0);
  });

  it('a 2FA user links a provider from their own session; it signs in to them from then on', async () => {
    const user = await twoFactorUser('walt@corp.example');
    idp.accounts.walt = { email: 'walt@corp.example', email_verified: true };
    const { front } = await linkFromSession(user.token, 'walt');
    expect(front.searchParams.get('linked')).toBe('corp');
    expect(await providerAccounts(user.userId)).toHaveLength(1);
    // The owner linked it: the README's documented behaviour, a sign-in through it asks for no second factor.
    const later = await signIn('walt');
    expect((await exchange(later.front.searchParams.get('code') as string)).json().userId).toBe(user.userId);
  });

  it('a signed-in user links and unlinks a provider; the last sign-in method cannot be unlinked', async () => {
    const user = await registerUser(t.app, { email: 'dave@example.com' });
    idp.accounts.dave = { email: 'dave.at.work@corp.example', email_verified: true };
    const { front } = await linkFromSession(user.token, 'dave');
    expect(front.searchParams.get('linked')).toBe('corp');

    const accounts = await t.app.inject({
      method: 'GET',
      url: '/auth/oauth/accounts',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(accounts.json().accounts.map((a: { providerId: string }) => a.providerId)).toEqual(['corp']);

    const viaCorp = await signIn('dave');
    expect((await exchange(viaCorp.front.searchParams.get('code') as string)).json().userId).toBe(user.userId);

    // Another user cannot unlink what is not theirs.
    const other = await registerUser(t.app);
    const notTheirs = await t.app.inject({
      method: 'DELETE',
      url: '/auth/oauth/accounts/corp',
      headers: { authorization: `Bearer ${other.token}` },
    });
    expect(notTheirs.statusCode).toBe(404);
    expect(notTheirs.json().error.code).toBe('OAUTH_ACCOUNT_NOT_FOUND');

    const unlink = await t.app.inject({
      method: 'DELETE',
      url: '/auth/oauth/accounts/corp',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(unlink.statusCode).toBe(200);
    const rows = await t.db.query("SELECT 1 FROM user_credentials WHERE user_id = $1 AND provider_id = 'corp'", [
      user.userId,
    ]);
    expect(rows.rows).toHaveLength(0);

    // An OAuth-only user keeps their only way in.
    idp.accounts.olga = { email: 'olga@corp.example', email_verified: true };
    const olga = await exchange((await signIn('olga')).front.searchParams.get('code') as string);
    const last = await t.app.inject({
      method: 'DELETE',
      url: '/auth/oauth/accounts/corp',
      headers: { authorization: `Bearer ${olga.json().token}` },
    });
    expect(last.statusCode).toBe(409);
    expect(last.json().error.code).toBe('LAST_SIGN_IN_METHOD');
  });

  it('a provider account linked to one user cannot be linked to another (OAUTH_LINK_REFUSED)', async () => {
    idp.accounts.paul = { email: 'paul@corp.example', email_verified: true };
    await exchange((await signIn('paul')).front.searchParams.get('code') as string);
    const user = await registerUser(t.app);
    const link = await t.app.inject({
      method: 'POST',
      url: '/auth/oauth/link/corp',
      headers: { authorization: `Bearer ${user.token}` },
    });
    const jar = new CookieJar();
    jar.store(link.headers['set-cookie'] as string[]);
    const { front } = await finish(jar, await authorizeAtProvider(link.json().url, 'paul'));
    expect(front.searchParams.get('error')).toBe('OAUTH_LINK_REFUSED');
  });

  it('an anonymous user linking a provider becomes that user: same id, is_anonymous off, verified email', async () => {
    const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json();
    idp.accounts.erin = { email: 'erin@corp.example', email_verified: true };
    const link = await t.app.inject({
      method: 'POST',
      url: '/auth/oauth/link/corp',
      headers: { authorization: `Bearer ${anon.token}` },
    });
    expect(link.statusCode).toBe(200);
    const jar = new CookieJar();
    jar.store(link.headers['set-cookie'] as string[]);
    const { front } = await finish(jar, await authorizeAtProvider(link.json().url, 'erin'));
    expect(front.searchParams.get('linked')).toBe('corp');
    const { rows } = await t.db.query<{ is_anonymous: boolean; email: string; email_verified: boolean }>(
      'SELECT is_anonymous, email, email_verified FROM users WHERE id = $1',
      [anon.userId],
    );
    expect(rows[0]).toEqual({ is_anonymous: false, email: 'erin@corp.example', email_verified: true });
    const later = await signIn('erin');
    expect((await exchange(later.front.searchParams.get('code') as string)).json().userId).toBe(anon.userId);
    expect((await session(anon.token)).statusCode).toBe(200);
  });

  it.skipIf(!process.env.TEST_DATABASE_URL)(
    'an anonymous user whose provider address is taken while the link completes is upgraded all the same',
    async () => {
      const anon = (await t.app.inject({ method: 'POST', url: '/auth/anonymous' })).json();
      idp.accounts.tess = { email: 'tess@corp.example', email_verified: true };
      const link = await t.app.inject({
        method: 'POST',
        url: '/auth/oauth/link/corp',
        headers: { authorization: `Bearer ${anon.token}` },
      });
      const jar = new CookieJar();
      jar.store(link.headers['set-cookie'] as string[]);
      const callback = await authorizeAtProvider(link.json().url, 'tess');
      // Another account takes the address, uncommitted: the upgrade's check does not see it, its write waits for it.
      let commit = () => {};
      const committed = new Promise<void>((resolve) => {
        commit = resolve;
      });
      let taken = () => {};
      const inserted = new Promise<void>((resolve) => {
        taken = resolve;
      });
      const holder = t.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO users (id, email) VALUES ('user_race_tess', 'tess@corp.example')`);
        taken();
        await committed;
      });
      await inserted;
      const finishing = finish(jar, callback);
      await expect
        .poll(
          async () =>
            (
              await t.db.query<{ n: number }>(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                  WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE users SET is_anonymous%'`,
              )
            ).rows[0]?.n,
          { timeout: 5000 },
        )
        .toBe(1);
      commit();
      await holder;
      expect((await finishing).front.searchParams.get('linked')).toBe('corp');
      const { rows } = await t.db.query<{ is_anonymous: boolean; email: string }>(
        'SELECT is_anonymous, email FROM users WHERE id = $1',
        [anon.userId],
      );
      expect(rows[0]?.is_anonymous).toBe(false);
      expect(rows[0]?.email).not.toBe('tess@corp.example');
    },
  );

  it('refuses: unknown provider, malformed and unknown codes, complete without a session', async () => {
    const unknown = await t.app.inject({ method: 'GET', url: '/auth/oauth/nope' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe('OAUTH_PROVIDER_UNKNOWN');
    const bad = await exchange('short');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('VALIDATION_FAILED');
    const none = await exchange('A'.repeat(43));
    expect(none.json().error.code).toBe('EXCHANGE_CODE_INVALID');
    const complete = await t.app.inject({ method: 'GET', url: '/auth/oauth/complete' });
    expect(new URL(complete.headers.location as string).searchParams.get('error')).toBe('OAUTH_FAILED');
    const hostile = await t.app.inject({ method: 'GET', url: `/auth/oauth/complete?error=${'x'.repeat(5000)}` });
    expect(hostile.statusCode).toBe(400);
    const unauth = await t.app.inject({ method: 'POST', url: '/auth/oauth/link/corp' });
    expect(unauth.statusCode).toBe(401);
  });

  // Regression: ?error=constructor (an Object.prototype member) was taken for a known code and answered 500.
  it("Better Auth error names that are Object.prototype's members end as OAUTH_FAILED", async () => {
    const json = await createSiblingApp(t, {});
    try {
      for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
        // Without oauth.redirect_url the completion answers JSON; with it, a redirect to the front end.
        const answered = await json.inject({ method: 'GET', url: `/auth/oauth/complete?error=${name}` });
        expect(answered.statusCode).toBe(400);
        expect(answered.json().error.code).toBe('OAUTH_FAILED');
        const redirected = await t.app.inject({ method: 'GET', url: `/auth/oauth/complete?error=${name}` });
        expect(redirected.statusCode).toBe(302);
        expect(new URL(redirected.headers.location as string).searchParams.get('error')).toBe('OAUTH_FAILED');
      }
    } finally {
      await json.close();
    }
  });

  it('an expired code, or the code of a revoked session, is refused', async () => {
    const user = await registerUser(t.app);
    const sid = (await t.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [user.userId])).rows[0]
      ?.id as string;
    const late = (await t.app.exchangeCodes.mint(sid, user.userId)) as string;
    await t.db.query(`UPDATE auth_exchange_codes SET expires_at = now() - interval '1 second'`);
    expect((await exchange(late)).json().error.code).toBe('EXCHANGE_CODE_INVALID');
    const orphan = (await t.app.exchangeCodes.mint(sid, user.userId)) as string;
    await t.db.query('DELETE FROM sessions WHERE id = $1', [sid]);
    expect((await exchange(orphan)).json().error.code).toBe('EXCHANGE_CODE_INVALID');
    // Regression: a code for a session already gone broke the foreign key (23503, a 500): now there is none.
    expect(await t.app.exchangeCodes.mint(sid, user.userId)).toBeNull();
  });

  it('concurrent exchanges of one code: exactly one succeeds', async () => {
    idp.accounts.zoe = { email: 'zoe@corp.example', email_verified: true };
    const code = (await signIn('zoe')).front.searchParams.get('code') as string;
    const results = await Promise.all([1, 2, 3, 4].map(() => exchange(code)));
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
  });

  // Regression: with require_email_verification, a provider account whose email the provider did not verify created a
  // user and a session for a free address (and Better Auth mailed the owner a link verifying that user), while a taken
  // address was refused (OAUTH_ACCOUNT_NOT_LINKED): a session for an unproven address, and taken addresses told apart.
  describe('with auth.require_email_verification', () => {
    let strict: Awaited<ReturnType<typeof createSiblingApp>>;
    let smtp: SmtpSink;
    beforeAll(async () => {
      smtp = await startSmtpSink();
      strict = await createSiblingApp(t, {
        auth: { require_email_verification: true },
        email: { smtp_url: smtp.url },
        oauth: {
          redirect_url: FRONT,
          oidc: { corp: { issuer: idp.issuer, client_id: idp.clientId, client_secret: idp.clientSecret } },
        },
      });
    });
    afterAll(async () => {
      await strict?.close();
      await smtp?.close();
    });

    it('an unverified provider email is refused alike for a taken and a free address: no user, session or email', async () => {
      await registerUser(t.app, { email: 'kate@corp.example' });
      idp.accounts.kate = { email: 'kate@corp.example', email_verified: false };
      idp.accounts.finn = { email: 'finn@corp.example', email_verified: false };
      const before = await countSessions();
      const taken = await signIn('kate', strict);
      const free = await signIn('finn', strict);
      // The same redirects all the way: Better Auth's to the completion route, then the completion route's.
      expect(free.callback.headers.location).toBe(taken.callback.headers.location);
      expect(free.front.toString()).toBe(taken.front.toString());
      expect(free.front.searchParams.get('error')).toBe('OAUTH_ACCOUNT_NOT_LINKED');
      expect(await countSessions()).toBe(before);
      expect((await t.db.query("SELECT 1 FROM users WHERE email = 'finn@corp.example'")).rows).toHaveLength(0);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(smtp.messages.filter((m) => m.rcpt.includes('finn@corp.example'))).toEqual([]);
    });

    it('a verified provider email still signs up and in', async () => {
      idp.accounts.gus = { email: 'gus@corp.example', email_verified: true };
      const { front } = await signIn('gus', strict);
      const ex = await exchange(front.searchParams.get('code') as string, undefined, strict);
      expect(ex.statusCode).toBe(200);
      const { rows } = await t.db.query('SELECT email_verified FROM users WHERE id = $1', [ex.json().userId]);
      expect(rows[0]).toEqual({ email_verified: true });
    });

    it('a signed-in user links a provider only with a verified email (OAUTH_LINK_REFUSED otherwise)', async () => {
      const user = await registerUser(t.app, { email: 'hana@example.com' });
      await t.db.query('UPDATE users SET email_verified = TRUE WHERE id = $1', [user.userId]);
      idp.accounts.hana = { email: 'hana@corp.example', email_verified: false };
      const refused = await linkFromSession(user.token, 'hana', strict);
      expect(refused.front.searchParams.get('error')).toBe('OAUTH_LINK_REFUSED');
      expect(await providerAccounts(user.userId)).toHaveLength(0);
      idp.accounts.hana.email_verified = true;
      const linked = await linkFromSession(user.token, 'hana', strict);
      expect(linked.front.searchParams.get('linked')).toBe('corp');
      expect(await providerAccounts(user.userId)).toHaveLength(1);
    });
  });

  // OpenID Connect Discovery 1.0, section 4.3: the announced issuer must be the one configured.
  describe('a provider whose discovery announces another issuer', () => {
    let other: OidcProvider;
    let app: Awaited<ReturnType<typeof createSiblingApp>>;
    beforeAll(async () => {
      // Listens at http://127.0.0.1:<port> but announces http://127.0.0.1:<port>/tenant-b as its issuer.
      other = await startOidcProvider({ redirectUris: [`${BASE}/api/auth/callback/corp`], issuerPath: '/tenant-b' });
      app = await createSiblingApp(t, {
        oauth: {
          redirect_url: FRONT,
          oidc: { corp: { issuer: other.url, client_id: other.clientId, client_secret: other.clientSecret } },
        },
      });
    });
    afterAll(async () => {
      await app?.close();
      await other?.close();
    });

    it('refuses to start a sign-in (OAUTH_ISSUER_MISMATCH); Better Auth own start route is not served', async () => {
      const res = await app.inject({ method: 'GET', url: '/auth/oauth/corp' });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('OAUTH_ISSUER_MISMATCH');
      // Its sign-ins would be unaudited (any callbackURL, or an id token posted directly): ours are the only start.
      const direct = await app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/social',
        payload: { provider: 'corp', callbackURL: `${BASE}/auth/oauth/complete` },
      });
      expect(direct.statusCode).toBe(404);
      expect(direct.json().error.code).toBe('NOT_FOUND');
    });
  });

  // Regression: the gateway's check took a redirect for an unreachable provider and let the sign-in go on, while Better
  // Auth followed the redirect and trusted the issuer the target announced.
  describe('a provider whose discovery document sits behind a redirect', () => {
    let other: OidcProvider;
    let front: Server;
    let app: Awaited<ReturnType<typeof createSiblingApp>>;
    beforeAll(async () => {
      // The configured issuer answers its discovery URL with a redirect to another issuer's document.
      other = await startOidcProvider({ redirectUris: [`${BASE}/api/auth/callback/corp`] });
      front = createServer((req, res) => res.writeHead(302, { location: `${other.url}${req.url}` }).end());
      await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
      app = await createSiblingApp(t, {
        oauth: {
          redirect_url: FRONT,
          oidc: {
            corp: {
              issuer: `http://127.0.0.1:${(front.address() as AddressInfo).port}`,
              client_id: other.clientId,
              client_secret: other.clientSecret,
            },
          },
        },
      });
    });
    afterAll(async () => {
      await app?.close();
      await other?.close();
      front?.closeAllConnections();
      await new Promise<void>((resolve) => front?.close(() => resolve()));
    });

    it('refuses to start a sign-in (OAUTH_ISSUER_MISMATCH)', async () => {
      const res = await app.inject({ method: 'GET', url: '/auth/oauth/corp' });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('OAUTH_ISSUER_MISMATCH');
    });
  });
});
