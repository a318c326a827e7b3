import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proveAddress } from '../../src/accounts/index.js';
import { hashSecret, newSecret } from '../../src/accounts/secrets.js';
import { generateId } from '../../src/auth/index.js';
import type { Queryable } from '../../src/db/index.js';
import { createPasskeyService, relyingPartyOf } from '../../src/passkeys/index.js';
import { statementsWaitingForALock } from '../helpers/db-locks.js';
import { type InFlight, whileSignInWaits } from '../helpers/in-flight.js';
import { createSoftAuthenticator, type SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import {
  addPasskey,
  assertion,
  authenticationOptions,
  ORIGIN,
  postAuthentication,
  postRegistration,
  registrationOptions,
} from './helpers.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const count = async (sql: string, params: unknown[] = []) =>
  Number((await t.db.query<{ n: string | number }>(`SELECT count(*) AS n FROM (${sql}) q`, params)).rows[0]?.n);
const sessionsOf = (userId: string) => count('SELECT 1 FROM sessions WHERE user_id = $1', [userId]);
const passkeysOf = (userId: string) => count('SELECT 1 FROM passkeys WHERE user_id = $1', [userId]);
// BIGINT: node-postgres returns it as a string.
const counterOf = async (id: string) =>
  Number(
    (await t.db.query<{ counter: string | number }>('SELECT counter FROM passkeys WHERE id = $1', [id])).rows[0]
      ?.counter,
  );
const lastRefusal = async () =>
  (
    await t.db.query<{ user_id: string | null; details: { reason: string; ceremony: string } }>(
      `SELECT user_id, details FROM auth_audit_log WHERE event = 'passkey.refused' ORDER BY id DESC LIMIT 1`,
    )
  ).rows[0];

/** A user with one passkey on `authenticator`. */
async function userWithPasskey(authenticator: SoftAuthenticator = createSoftAuthenticator()) {
  const user = await registerUser(t.app);
  const passkey = await addPasskey(t.app, user.token, authenticator);
  return { ...user, authenticator, passkey };
}

describe('challenges are bound to their purpose', () => {
  it('a registration challenge cannot complete a sign-in, and stays usable for registration', async () => {
    const u = await userWithPasskey();
    const before = await sessionsOf(u.userId);
    const regOptions = await registrationOptions(t.app, u.token);
    const authOptions = await authenticationOptions(t.app);
    const forged = u.authenticator.getAssertion(authOptions, ORIGIN, { challengeOverride: regOptions.challenge });
    const res = await postAuthentication(t.app, forged);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_CHALLENGE_INVALID');
    expect(await sessionsOf(u.userId)).toBe(before);
    expect((await lastRefusal())?.details).toMatchObject({
      reason: 'PASSKEY_CHALLENGE_INVALID',
      ceremony: 'authentication',
    });

    const ok = await postRegistration(t.app, u.token, createSoftAuthenticator().createCredential(regOptions, ORIGIN));
    expect(ok.statusCode).toBe(200);
  });

  it('a sign-in challenge cannot complete a registration', async () => {
    const user = await registerUser(t.app);
    const regOptions = await registrationOptions(t.app, user.token);
    const authOptions = await authenticationOptions(t.app);
    const credential = createSoftAuthenticator().createCredential(regOptions, ORIGIN, {
      challengeOverride: authOptions.challenge,
    });
    const res = await postRegistration(t.app, user.token, credential);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_CHALLENGE_INVALID');
    expect(await passkeysOf(user.userId)).toBe(0);
  });

  it('a registration challenge issued to one user cannot be completed by another', async () => {
    const alice = await registerUser(t.app);
    const bob = await registerUser(t.app);
    const aliceOptions = await registrationOptions(t.app, alice.token);
    const res = await postRegistration(
      t.app,
      bob.token,
      createSoftAuthenticator().createCredential(aliceOptions, ORIGIN),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_CHALLENGE_INVALID');
    expect(await passkeysOf(bob.userId)).toBe(0);
    expect(await passkeysOf(alice.userId)).toBe(0);
  });
});

describe('adding a passkey needs a recent sign-in', () => {
  it('a session older than auth.recent_auth_window cannot ask for options or complete a registration', async () => {
    const user = await registerUser(t.app);
    const options = await registrationOptions(t.app, user.token);
    // An hour: within the day Better Auth's plugin allows, past the gateway's window for sensitive changes (600 s).
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '1 hour' WHERE user_id = $1`, [user.userId]);
    const late = await postRegistration(t.app, user.token, createSoftAuthenticator().createCredential(options, ORIGIN));
    expect(late.statusCode).toBe(403);
    expect(late.json().error.code).toBe('PASSKEY_SESSION_NOT_FRESH');
    const again = await t.app.inject({
      method: 'POST',
      url: '/auth/passkey/register/options',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(again.statusCode).toBe(403);
    expect(again.json().error.code).toBe('PASSKEY_SESSION_NOT_FRESH');
    expect(await passkeysOf(user.userId)).toBe(0);
  });

  // Regression: the session was checked only before the ceremony, and the insert waited for a reclaim and then succeeded.
  it('a registration in flight when the address’s owner reclaims the account stores nothing (401)', async () => {
    const registrant = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    const credential = authenticator.createCredential(await registrationOptions(t.app, registrant.token), ORIGIN);
    // The owner opens a magic link: the reclaim holds the user row while it removes sessions and passkeys.
    let commit!: () => void;
    const committing = new Promise<void>((resolve) => {
      commit = resolve;
    });
    let reclaiming!: () => void;
    const reclaimed = new Promise<void>((resolve) => {
      reclaiming = resolve;
    });
    const reclaim = t.db.transaction(async (tx) => {
      const origin = { channel: 'rest', ip: '127.0.0.1', userAgent: null };
      const proven = await proveAddress(tx, registrant.userId, { method: 'magic_link', origin, audit: t.app.audit });
      expect(proven?.reclaimed).toBeTruthy();
      reclaiming();
      await committing;
    });
    await reclaimed;
    const registration = postRegistration(t.app, registrant.token, credential);
    await statementsWaitingForALock(t.db, 1);
    commit();
    await reclaim;

    const res = await registration;
    expect([res.statusCode, res.json().error?.code]).toEqual([401, 'INVALID_TOKEN']);
    expect(await passkeysOf(registrant.userId)).toBe(0);
    expect((await postAuthentication(t.app, await assertion(t.app, authenticator))).statusCode).toBe(401);
  });

  it('an anonymous user, who has no other way to sign in again, may add one with an older session', async () => {
    const anon = await t.app.inject({ method: 'POST', url: '/auth/anonymous' });
    const { userId, token } = anon.json() as { userId: string; token: string };
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '3 days' WHERE user_id = $1`, [userId]);
    await addPasskey(t.app, token, createSoftAuthenticator());
    expect(await passkeysOf(userId)).toBe(1);
  });
});

// Regression: the sign-in read the passkey and the user, then Better Auth inserted the session in another statement; a
// reclaim by the address's owner (or a disable) committing between the two deleted the sessions but not this one, and
// the registrant of a pre-hijacked account, signed in, planted a new passkey in the reclaimed account.
describe('a sign-in in flight when the account is reclaimed or disabled', () => {
  const reclaim = (userId: string) => async (tx: Queryable) => {
    const origin = { channel: 'rest', ip: '127.0.0.1', userAgent: null };
    const proven = await proveAddress(tx, userId, { method: 'magic_link', origin, audit: t.app.audit });
    expect(proven?.reclaimed?.passkeys).toBe(1);
  };
  // accounts.store.ts setDisabled(userId, true): the same statements.
  const disable = (userId: string) => async (tx: Queryable) => {
    await tx.query('UPDATE users SET disabled_at = now(), updated_at = now() WHERE id = $1', [userId]);
    await tx.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
  };

  for (const at of ['before the insert', 'after the insert'] satisfies InFlight[]) {
    it(`a reclaim committing ${at} of the session: 401 PASSKEY_UNKNOWN_CREDENTIAL, no session`, async () => {
      const registrant = await userWithPasskey();
      const credential = await assertion(t.app, registrant.authenticator);
      const res = await whileSignInWaits(
        t.db,
        registrant.userId,
        at,
        () => postAuthentication(t.app, credential),
        reclaim(registrant.userId),
      );
      expect([res.statusCode, res.json().error?.code]).toEqual([401, 'PASSKEY_UNKNOWN_CREDENTIAL']);
      expect(await sessionsOf(registrant.userId)).toBe(0);
      expect(await lastRefusal()).toMatchObject({ user_id: registrant.userId });
    });

    it(`a disable committing ${at} of the session: 403 ACCOUNT_DISABLED, no session to come back`, async () => {
      const user = await userWithPasskey();
      const credential = await assertion(t.app, user.authenticator);
      const res = await whileSignInWaits(
        t.db,
        user.userId,
        at,
        () => postAuthentication(t.app, credential),
        disable(user.userId),
      );
      expect([res.statusCode, res.json().error?.code]).toEqual([403, 'ACCOUNT_DISABLED']);
      expect(await sessionsOf(user.userId)).toBe(0);
    });
  }

  it('20 sign-ins racing the owner’s magic link: each answered 200, 401 or 403; none of their sessions survives', async () => {
    for (let round = 0; round < 6; round++) {
      const registrant = await userWithPasskey();
      const credentials = [];
      // Counter 0 (an authenticator without one): sent at once, later counters could arrive first and be refused.
      for (let i = 0; i < 20; i++) {
        credentials.push(await assertion(t.app, registrant.authenticator, { signCount: 0 }));
      }
      // The link the owner got (magic-links.ts stores its SHA-256).
      const link = newSecret();
      await t.db.query(
        `INSERT INTO magic_link_tokens (token_hash, email, expires_at) VALUES ($1, $2, now() + interval '10 minutes')`,
        [hashSecret(link), registrant.email],
      );
      const signIns = credentials.map((c) => postAuthentication(t.app, c));
      await new Promise((resolve) => setTimeout(resolve, round * 4));
      const opened = await t.app.inject({ method: 'POST', url: '/auth/magic-link/verify', payload: { token: link } });
      expect(opened.statusCode).toBe(200);
      const answers = await Promise.all(signIns);
      expect(answers.filter((r) => ![200, 401, 403].includes(r.statusCode)).map((r) => r.body)).toEqual([]);
      // A passkey removed mid-sign-in is unknown, not a clone (a warning meant for alerts).
      const refusals = new Set(answers.filter((r) => r.statusCode !== 200).map((r) => r.json().error.code));
      expect([...refusals].filter((code) => code !== 'PASSKEY_UNKNOWN_CREDENTIAL')).toEqual([]);
      expect(t.logs.lines.filter((l) => l.includes(registrant.passkey.id))).toEqual([]);
      // The one session left is the owner's: the one the link made.
      const left = await t.db.query<{ method: string | null }>(
        `SELECT (SELECT a.details->>'method' FROM auth_audit_log a WHERE a.session_id = s.id AND a.event = 'login.success')
                AS method
           FROM sessions s WHERE s.user_id = $1`,
        [registrant.userId],
      );
      expect(left.rows).toEqual([{ method: 'magic_link' }]);
    }
  });
});

describe('challenges are single use and expire', () => {
  it('a replayed sign-in is refused', async () => {
    const u = await userWithPasskey();
    const credential = await assertion(t.app, u.authenticator);
    expect((await postAuthentication(t.app, credential)).statusCode).toBe(200);
    const sessions = await sessionsOf(u.userId);
    const replay = await postAuthentication(t.app, credential);
    expect(replay.statusCode).toBe(400);
    expect(replay.json().error.code).toBe('PASSKEY_CHALLENGE_INVALID');
    expect(await sessionsOf(u.userId)).toBe(sessions);
  });

  it('a replayed registration is refused', async () => {
    const user = await registerUser(t.app);
    const options = await registrationOptions(t.app, user.token);
    expect(
      (await postRegistration(t.app, user.token, createSoftAuthenticator().createCredential(options, ORIGIN)))
        .statusCode,
    ).toBe(200);
    const again = await postRegistration(
      t.app,
      user.token,
      createSoftAuthenticator().createCredential(options, ORIGIN),
    );
    expect(again.statusCode).toBe(400);
    expect(again.json().error.code).toBe('PASSKEY_CHALLENGE_INVALID');
    expect(await passkeysOf(user.userId)).toBe(1);
  });

  it('an expired challenge is refused, for sign-in and registration', async () => {
    const u = await userWithPasskey();
    const credential = await assertion(t.app, u.authenticator);
    const regOptions = await registrationOptions(t.app, u.token);
    await t.db.query(
      `UPDATE verification_tokens SET expires_at = now() - interval '1 second' WHERE identifier LIKE 'passkey:%'`,
    );
    // Other clients asking for options meanwhile (which sweeps old challenges) does not turn "expired" into "unknown".
    await authenticationOptions(t.app);
    const res = await postAuthentication(t.app, credential);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_CHALLENGE_EXPIRED');
    const reg = await postRegistration(t.app, u.token, createSoftAuthenticator().createCredential(regOptions, ORIGIN));
    expect(reg.statusCode).toBe(400);
    expect(reg.json().error.code).toBe('PASSKEY_CHALLENGE_EXPIRED');
    expect(await passkeysOf(u.userId)).toBe(1);
    expect(await counterOf(u.passkey.id)).toBe(0);
  });

  it('live for passkeys.challenge_ttl seconds (default 300), stored hashed', async () => {
    const options = await authenticationOptions(t.app);
    expect(options.timeout).toBe(300_000);
    const { rows } = await t.db.query<{ identifier: string; ttl: number }>(
      `SELECT identifier, round(extract(epoch FROM expires_at - created_at))::int AS ttl FROM verification_tokens
        WHERE identifier LIKE 'passkey:authentication:%' ORDER BY created_at DESC LIMIT 1`,
    );
    expect(rows[0]?.ttl).toBe(300);
    expect(rows[0]?.identifier).not.toContain(options.challenge);
  });

  it('concurrent completions of one registration challenge store one passkey', async () => {
    const user = await registerUser(t.app);
    const options = await registrationOptions(t.app, user.token);
    const credentials = Array.from({ length: 8 }, () => createSoftAuthenticator().createCredential(options, ORIGIN));
    const results = await Promise.all(credentials.map((c) => postRegistration(t.app, user.token, c)));
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(results.filter((r) => r.statusCode === 400)).toHaveLength(7);
    expect(await passkeysOf(user.userId)).toBe(1);
  });
});

describe('refusals: origin, rpID, signature, credential, user verification', () => {
  it('a wrong origin is refused (sign-in and registration)', async () => {
    const u = await userWithPasskey();
    const options = await authenticationOptions(t.app);
    const res = await postAuthentication(
      t.app,
      u.authenticator.getAssertion(options, ORIGIN, { originOverride: 'https://evil.example' }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_ORIGIN_MISMATCH');
    expect(await counterOf(u.passkey.id)).toBe(0);
    expect(await lastRefusal()).toMatchObject({
      user_id: u.userId,
      details: { reason: 'PASSKEY_ORIGIN_MISMATCH', ceremony: 'authentication' },
    });

    const regOptions = await registrationOptions(t.app, u.token);
    const reg = await postRegistration(
      t.app,
      u.token,
      createSoftAuthenticator().createCredential(regOptions, ORIGIN, { originOverride: 'https://evil.example' }),
    );
    expect(reg.statusCode).toBe(400);
    expect(reg.json().error.code).toBe('PASSKEY_ORIGIN_MISMATCH');
    expect(await passkeysOf(u.userId)).toBe(1);
  });

  it('a trusted origin on the rpID host is accepted; one on another host is not', async () => {
    const u = await userWithPasskey();
    // config.yaml trusts http://localhost:5173 (same host as the rpID) and the design lists https://yourdomain.com.
    const ok = await postAuthentication(
      t.app,
      u.authenticator.getAssertion(await authenticationOptions(t.app), ORIGIN, {
        originOverride: 'http://localhost:5173',
      }),
    );
    expect(ok.statusCode).toBe(200);
    expect(relyingPartyOf(t.config).origins).toEqual(['http://localhost:3000', 'http://localhost:5173']);
  });

  it('a wrong rpID is refused (sign-in and registration)', async () => {
    const u = await userWithPasskey();
    const res = await postAuthentication(
      t.app,
      u.authenticator.getAssertion(await authenticationOptions(t.app), ORIGIN, { rpIdOverride: 'evil.example' }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_RPID_MISMATCH');
    expect(await counterOf(u.passkey.id)).toBe(0);

    const reg = await postRegistration(
      t.app,
      u.token,
      createSoftAuthenticator().createCredential(await registrationOptions(t.app, u.token), ORIGIN, {
        rpIdOverride: 'evil.example',
      }),
    );
    expect(reg.statusCode).toBe(400);
    expect(reg.json().error.code).toBe('PASSKEY_RPID_MISMATCH');
    expect(await passkeysOf(u.userId)).toBe(1);
  });

  it('a bad signature is refused, and does not move the counter', async () => {
    for (const algorithm of ['ES256', 'Ed25519'] as const) {
      const u = await userWithPasskey(createSoftAuthenticator({ algorithm }));
      const sessions = await sessionsOf(u.userId);
      const res = await postAuthentication(t.app, await assertion(t.app, u.authenticator, { tamperSignature: true }));
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('PASSKEY_SIGNATURE_INVALID');
      expect(await counterOf(u.passkey.id)).toBe(0);
      expect(await sessionsOf(u.userId)).toBe(sessions);
      expect((await lastRefusal())?.details.reason).toBe('PASSKEY_SIGNATURE_INVALID');
    }
  });

  it('a forged assertion with a stale counter is reported as a bad signature, not a clone', async () => {
    const u = await userWithPasskey();
    expect((await postAuthentication(t.app, await assertion(t.app, u.authenticator))).statusCode).toBe(200);
    const res = await postAuthentication(
      t.app,
      await assertion(t.app, u.authenticator, { signCount: 1, tamperSignature: true }),
    );
    expect(res.json().error.code).toBe('PASSKEY_SIGNATURE_INVALID');
  });

  it('an unknown credential is refused', async () => {
    const stranger = createSoftAuthenticator();
    const user = await registerUser(t.app);
    // A real credential, never sent to the server.
    stranger.createCredential(await registrationOptions(t.app, user.token), ORIGIN);
    const res = await postAuthentication(t.app, await assertion(t.app, stranger));
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('PASSKEY_UNKNOWN_CREDENTIAL');
  });

  // Regression: the sign-in guard's refusal answered 403 but left no audit row, where a password sign-in records it.
  it('a disabled account is refused (403 ACCOUNT_DISABLED), recorded, and gets no session', async () => {
    const user = await userWithPasskey();
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.userId]);
    const res = await postAuthentication(t.app, await assertion(t.app, user.authenticator));
    expect([res.statusCode, res.json().error.code]).toEqual([403, 'ACCOUNT_DISABLED']);
    expect(await lastRefusal()).toMatchObject({
      user_id: user.userId,
      details: { reason: 'ACCOUNT_DISABLED', ceremony: 'authentication' },
    });
    expect(await sessionsOf(user.userId)).toBe(1); // the registration's
  });

  it('an assertion without user verification is refused', async () => {
    const u = await userWithPasskey();
    const res = await postAuthentication(t.app, await assertion(t.app, u.authenticator, { userVerified: false }));
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_VERIFICATION_FAILED');
  });

  it('a passkey already registered is refused with a conflict', async () => {
    const u = await userWithPasskey();
    const options = await registrationOptions(t.app, u.token);
    const dup = createSoftAuthenticator().createCredential(options, ORIGIN);
    // The credential id is already on file (credential ids are unique across all users).
    await t.db.query('UPDATE passkeys SET credential_id = $1 WHERE id = $2', [dup.id, u.passkey.id]);
    const res = await postRegistration(t.app, u.token, dup);
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('PASSKEY_ALREADY_REGISTERED');
    expect(await passkeysOf(u.userId)).toBe(1);
  });
});

describe('malformed credentials', () => {
  const clientData = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const cases: [string, unknown][] = [
    ['a string', 'not-a-credential'],
    ['an array', [1, 2]],
    ['null', null],
    ['an empty object', {}],
    ['a non-base64url id', { id: '!!', rawId: '!!', type: 'public-key', response: {} }],
    ['a wrong type', { id: 'AAAA', rawId: 'AAAA', type: 'password', response: {} }],
    ['rawId differing from id', { id: 'AAAA', rawId: 'BBBB', type: 'public-key', response: {} }],
    ['no response', { id: 'AAAA', rawId: 'AAAA', type: 'public-key' }],
    [
      'clientDataJSON that is not JSON',
      {
        id: 'AAAA',
        type: 'public-key',
        response: { clientDataJSON: 'bm90IGpzb24', authenticatorData: 'AAAA', signature: 'AAAA' },
      },
    ],
    [
      'clientDataJSON without a challenge',
      {
        id: 'AAAA',
        type: 'public-key',
        response: {
          clientDataJSON: clientData({ type: 'webauthn.get' }),
          authenticatorData: 'AAAA',
          signature: 'AAAA',
        },
      },
    ],
    [
      'a huge signature',
      {
        id: 'AAAA',
        type: 'public-key',
        response: {
          clientDataJSON: clientData({ challenge: 'AAAA' }),
          authenticatorData: 'AAAA',
          signature: 'A'.repeat(5000),
        },
      },
    ],
  ];

  it.each(cases)('sign-in with %s: 400 PASSKEY_MALFORMED_CREDENTIAL', async (_name, credential) => {
    const res = await postAuthentication(t.app, credential);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_MALFORMED_CREDENTIAL');
  });

  it('registration with a garbage attestation object: a 400, never a 500', async () => {
    const user = await registerUser(t.app);
    const options = await registrationOptions(t.app, user.token);
    const good = createSoftAuthenticator().createCredential(options, ORIGIN);
    const res = await postRegistration(t.app, user.token, {
      ...good,
      response: { ...good.response, attestationObject: 'AAECAwQFBgcICQ' },
    });
    expect(res.statusCode).toBe(400);
    expect(['PASSKEY_MALFORMED_CREDENTIAL', 'PASSKEY_VERIFICATION_FAILED']).toContain(res.json().error.code);
    expect(await passkeysOf(user.userId)).toBe(0);
  });

  it('registration with a credential that is not an object: 400 PASSKEY_MALFORMED_CREDENTIAL', async () => {
    const user = await registerUser(t.app);
    const res = await postRegistration(t.app, user.token, 42);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_MALFORMED_CREDENTIAL');
  });

  it('a body that is not JSON, or lacks credential, gets the core codes', async () => {
    const bad = await t.app.inject({
      method: 'POST',
      url: '/auth/passkey/authenticate',
      headers: { 'content-type': 'application/json' },
      payload: '{"credential":',
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('MALFORMED_JSON');
    const missing = await t.app.inject({ method: 'POST', url: '/api/auth/passkey/authenticate', payload: {} });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'credential' });
  });
});

describe('signature counters', () => {
  it('a cloned authenticator replaying a used counter is refused and logged', async () => {
    const u = await userWithPasskey();
    const clone = u.authenticator.clone();
    expect((await postAuthentication(t.app, await assertion(t.app, u.authenticator))).statusCode).toBe(200);
    expect(await counterOf(u.passkey.id)).toBe(1);
    const sessions = await sessionsOf(u.userId);

    // The clone still holds counter 0, so its next signature carries 1: not greater than the stored 1.
    const res = await postAuthentication(t.app, await assertion(t.app, clone));
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('PASSKEY_COUNTER_REGRESSION');
    expect(await counterOf(u.passkey.id)).toBe(1);
    expect(await sessionsOf(u.userId)).toBe(sessions);
    expect(await lastRefusal()).toMatchObject({ user_id: u.userId, details: { reason: 'PASSKEY_COUNTER_REGRESSION' } });
    const line = t.logs.lines.find((l) => l.includes('possible cloned authenticator'));
    expect(line).toBeDefined();
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 40,
      keyId: u.passkey.id,
      storedCounter: 1,
      receivedCounter: 1,
    });

    // A counter that went down is refused the same way; one that moved forward signs in.
    const lower = await postAuthentication(t.app, await assertion(t.app, u.authenticator, { signCount: 0 }));
    expect(lower.json().error.code).toBe('PASSKEY_COUNTER_REGRESSION');
    const forward = await postAuthentication(t.app, await assertion(t.app, u.authenticator, { signCount: 7 }));
    expect(forward.statusCode).toBe(200);
    expect(await counterOf(u.passkey.id)).toBe(7);
  });

  it('authenticators without a counter (always 0) keep signing in', async () => {
    const u = await userWithPasskey();
    for (let i = 0; i < 2; i++) {
      const res = await postAuthentication(t.app, await assertion(t.app, u.authenticator, { signCount: 0 }));
      expect(res.statusCode).toBe(200);
    }
  });

  it('two clones signing the same counter at once: at most one gets in', async () => {
    const u = await userWithPasskey();
    const clone = u.authenticator.clone();
    const [a, b] = await Promise.all([assertion(t.app, u.authenticator), assertion(t.app, clone)]);
    const results = await Promise.all([postAuthentication(t.app, a), postAuthentication(t.app, b)]);
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(results.find((r) => r.statusCode !== 200)?.json().error.code).toBe('PASSKEY_COUNTER_REGRESSION');
  });
});

describe('one user cannot touch another’s passkeys', () => {
  it('cannot see, rename or delete them', async () => {
    const alice = await userWithPasskey();
    const bob = await userWithPasskey();
    const asBob = { authorization: `Bearer ${bob.token}` };

    const list = await t.app.inject({ method: 'GET', url: '/auth/passkeys', headers: asBob });
    expect(list.json().passkeys.map((p: { id: string }) => p.id)).toEqual([bob.passkey.id]);

    const rename = await t.app.inject({
      method: 'PATCH',
      url: `/auth/passkeys/${alice.passkey.id}`,
      headers: asBob,
      payload: { name: 'mine now' },
    });
    expect(rename.statusCode).toBe(404);
    expect(rename.json().error.code).toBe('PASSKEY_NOT_FOUND');
    const del = await t.app.inject({ method: 'DELETE', url: `/auth/passkeys/${alice.passkey.id}`, headers: asBob });
    expect(del.statusCode).toBe(404);
    expect(del.json().error.code).toBe('PASSKEY_NOT_FOUND');
    const { rows } = await t.db.query<{ name: string | null }>('SELECT name FROM passkeys WHERE id = $1', [
      alice.passkey.id,
    ]);
    expect(rows).toEqual([{ name: null }]);

    // Better Auth's own routes refuse too.
    const baDelete = await t.app.inject({
      method: 'POST',
      url: '/api/auth/passkey/delete-passkey',
      headers: { ...asBob, origin: ORIGIN },
      payload: { id: alice.passkey.id },
    });
    expect(baDelete.statusCode).toBeGreaterThanOrEqual(400);
    expect(baDelete.statusCode).toBeLessThan(500);
    expect(await passkeysOf(alice.userId)).toBe(1);
  });

  it('options narrowed to one account do not accept another account’s passkey', async () => {
    const alice = await userWithPasskey();
    const bob = await userWithPasskey();
    const options = await authenticationOptions(t.app, alice.email);
    const res = await postAuthentication(
      t.app,
      bob.authenticator.getAssertion({ ...options, allowCredentials: [] }, ORIGIN),
    );
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('PASSKEY_UNKNOWN_CREDENTIAL');
    expect(await counterOf(bob.passkey.id)).toBe(0);
  });
});

describe('the last passkey of an account without a password', () => {
  const remove = (token: string, id: string) =>
    t.app.inject({ method: 'DELETE', url: `/auth/passkeys/${id}`, headers: { authorization: `Bearer ${token}` } });

  it('cannot be deleted; with a password it can', async () => {
    const u = await userWithPasskey();
    const second = await addPasskey(t.app, u.token, createSoftAuthenticator());
    await t.db.query('UPDATE user_credentials SET password_hash = NULL WHERE user_id = $1', [u.userId]);

    expect((await remove(u.token, second.id)).statusCode).toBe(200);
    const last = await remove(u.token, u.passkey.id);
    expect(last.statusCode).toBe(409);
    expect(last.json().error.code).toBe('PASSKEY_LAST_SIGN_IN_METHOD');
    expect(await passkeysOf(u.userId)).toBe(1);
    expect((await lastRefusal())?.details.reason).toBe('PASSKEY_LAST_SIGN_IN_METHOD');

    const withPassword = await userWithPasskey();
    expect((await remove(withPassword.token, withPassword.passkey.id)).statusCode).toBe(200);
    expect(await passkeysOf(withPassword.userId)).toBe(0);
  });

  it('two concurrent deletes of an account’s two passkeys leave one', async () => {
    const u = await userWithPasskey();
    const second = await addPasskey(t.app, u.token, createSoftAuthenticator());
    await t.db.query('UPDATE user_credentials SET password_hash = NULL WHERE user_id = $1', [u.userId]);
    const results = await Promise.all([remove(u.token, u.passkey.id), remove(u.token, second.id)]);
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    expect(await passkeysOf(u.userId)).toBe(1);
  });
});

describe('relying party', () => {
  it('rpID is base_url’s hostname; origins are base_url plus trusted origins on that host or its subdomains', () => {
    const rp = relyingPartyOf({
      server: {
        ...t.config.server,
        base_url: 'https://auth.example.com/gateway',
        trusted_origins: [
          'https://app.auth.example.com',
          'https://example.com',
          'https://auth.example.com:8443',
          'https://evilauth.example.com',
          'not a url',
          'https://auth.example.com',
        ],
      },
      passkeys: { rp_name: 'X', challenge_ttl: 60 },
    });
    expect(rp).toEqual({
      rpID: 'auth.example.com',
      rpName: 'X',
      origins: ['https://auth.example.com', 'https://app.auth.example.com', 'https://auth.example.com:8443'],
      challengeTtlSeconds: 60,
    });
  });

  it('is logged at start', () => {
    const line = t.logs.lines.find((l) => l.includes('passkeys: relying party'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      rpID: 'localhost',
      origins: ['http://localhost:3000', 'http://localhost:5173'],
    });
  });
});

describe('passkeys.challenge_ttl', () => {
  it('sets the options timeout and the challenge expiry', async () => {
    const service = createPasskeyService({
      db: t.db,
      rp: { ...relyingPartyOf(t.config), challengeTtlSeconds: 60 },
      audit: t.app.audit,
      log: t.app.log,
      newId: generateId,
      createSession: () => Promise.reject(new Error('not used')),
      freshSessionSeconds: 600,
    });
    const options = await service.authenticationOptions();
    expect(options.timeout).toBe(60_000);
    const { rows } = await t.db.query<{ ttl: number }>(
      `SELECT round(extract(epoch FROM expires_at - created_at))::int AS ttl FROM verification_tokens
        WHERE identifier LIKE 'passkey:authentication:%' ORDER BY created_at DESC LIMIT 1`,
    );
    expect(rows).toEqual([{ ttl: 60 }]);
  });
});
