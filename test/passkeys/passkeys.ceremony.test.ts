import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
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

describe('passkey registration', () => {
  it('stores the passkey the browser created, in the design table', async () => {
    const user = await registerUser(t.app);
    const options = await registrationOptions(t.app, user.token);
    expect(options.rp).toEqual({ name: 'Dexorder AI', id: 'localhost' });
    expect(options.authenticatorSelection).toMatchObject({ residentKey: 'required', userVerification: 'required' });
    expect(options.user.name).toBe(user.email);

    const authenticator = createSoftAuthenticator({
      algorithm: 'ES256',
      aaguid: '08987058-cadc-4b81-b6e1-30de50dcbe96',
    });
    const credential = authenticator.createCredential(options, ORIGIN);
    const res = await postRegistration(t.app, user.token, credential, ' Laptop ');
    expect(res.statusCode).toBe(200);
    const { passkey } = res.json();
    expect(passkey).toMatchObject({ name: 'Laptop', transports: ['internal'], backedUp: false });

    const { rows } = await t.db.query<Record<string, unknown>>('SELECT * FROM passkeys WHERE user_id = $1', [
      user.userId,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: passkey.id,
      name: 'Laptop',
      credential_id: credential.id,
      device_type: 'singleDevice',
      backed_up: false,
      transports: 'internal',
      aaguid: '08987058-cadc-4b81-b6e1-30de50dcbe96',
    });
    // BIGINT: a string from node-postgres, a number from PGlite.
    expect(String(rows[0]?.counter)).toBe('0');
    expect(String(rows[0]?.id)).toMatch(/^pk_\d+_[0-9a-z]+$/);
    // The stored key is the COSE key, standard base64 (the format Better Auth's plugin reads).
    const cose = authenticator.getCredential(credential.id)?.cosePublicKey;
    expect(rows[0]?.credential_public_key).toBe(Buffer.from(cose ?? []).toString('base64'));

    const { rows: audit } = await t.db.query<{ details: Record<string, unknown> }>(
      `SELECT details FROM auth_audit_log WHERE event = 'passkey.added' AND user_id = $1`,
      [user.userId],
    );
    expect(audit).toEqual([{ details: expect.objectContaining({ keyId: passkey.id }) }]);
    // The challenge was used up.
    const { rows: left } = await t.db.query(
      `SELECT 1 FROM verification_tokens WHERE identifier LIKE 'passkey:registration:%' AND token LIKE $1`,
      [`%${user.userId}%`],
    );
    expect(left).toHaveLength(0);
  });

  it('registers Ed25519 passkeys too, and excludes already registered ones in new options', async () => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator({ algorithm: 'Ed25519' });
    const { credentialId } = await addPasskey(t.app, user.token, authenticator);
    const options = await registrationOptions(t.app, user.token);
    expect(options.excludeCredentials?.map((c) => c.id)).toEqual([credentialId]);

    const res = await postAuthentication(t.app, await assertion(t.app, authenticator));
    expect(res.statusCode).toBe(200);
    expect(res.json().userId).toBe(user.userId);
  });

  it('requires a signed-in user', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/auth/passkey/register/options' });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('AUTH_REQUIRED');
    const reg = await t.app.inject({ method: 'POST', url: '/api/auth/passkey/register', payload: { credential: {} } });
    expect(reg.statusCode).toBe(401);
  });
});

describe('passkey sign-in', () => {
  it('signs in usernameless with the same token and session as a password login', async () => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    const { id } = await addPasskey(t.app, user.token, authenticator);

    const options = await authenticationOptions(t.app);
    expect(options.rpId).toBe('localhost');
    expect(options.allowCredentials ?? []).toEqual([]);
    expect(options.userVerification).toBe('required');
    const res = await postAuthentication(t.app, authenticator.getAssertion(options, ORIGIN));
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toEqual({ success: true, token: expect.any(String), userId: user.userId });
    expect(res.headers['x-auth-token']).toBe(body.token);

    const session = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${body.token}` },
    });
    expect(session.statusCode).toBe(200);
    expect(session.json().user).toEqual({ id: user.userId, email: user.email, name: 'Test User' });
    const { rows } = await t.db.query<{ token: string; user_id: string }>(
      'SELECT token, user_id FROM sessions WHERE id = $1',
      [session.json().session.id],
    );
    expect(rows[0]?.user_id).toBe(user.userId);
    // Better Auth knows the session too (its token works as our mount's bearer translation target).
    const ba = await t.app.inject({
      method: 'GET',
      url: '/api/auth/get-session',
      headers: { authorization: `Bearer ${body.token}` },
    });
    expect(ba.json().user.id).toBe(user.userId);

    const { rows: pk } = await t.db.query<{ counter: string }>('SELECT counter::text FROM passkeys WHERE id = $1', [
      id,
    ]);
    expect(pk[0]?.counter).toBe('1');
    const { rows: events } = await t.db.query<{ event: string; details: Record<string, unknown> }>(
      `SELECT event, details FROM auth_audit_log WHERE user_id = $1 AND event IN ('passkey.used', 'login.success')
        ORDER BY id`,
      [user.userId],
    );
    expect(events).toEqual([
      { event: 'passkey.used', details: { keyId: id } },
      { event: 'login.success', details: { method: 'passkey' } },
    ]);
  });

  it('signs in through POST /api/auth/passkey/authenticate as well', async () => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    await addPasskey(t.app, user.token, authenticator);
    const res = await postAuthentication(
      t.app,
      await assertion(t.app, authenticator),
      '/api/auth/passkey/authenticate',
    );
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ success: true, userId: user.userId });
  });

  it('narrows the choice with ?email= and accepts that account’s passkey', async () => {
    const user = await registerUser(t.app);
    const laptop = createSoftAuthenticator();
    const authenticator = createSoftAuthenticator({ transports: ['usb', 'nfc'] });
    await addPasskey(t.app, user.token, laptop);
    const second = await addPasskey(t.app, user.token, authenticator);

    const options = await authenticationOptions(t.app, `  ${user.email.toUpperCase()} `);
    const res = await postAuthentication(
      t.app,
      authenticator.getAssertion(options, ORIGIN, { credentialId: second.credentialId }),
    );
    expect(res.statusCode).toBe(200);
    expect(res.json().userId).toBe(user.userId);
  });

  it('answers an unknown email with usable-looking options that no passkey can complete', async () => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    await addPasskey(t.app, user.token, authenticator);
    const options = await authenticationOptions(t.app, 'nobody@example.com');
    expect(options.allowCredentials ?? []).toEqual([]);
    const res = await postAuthentication(t.app, authenticator.getAssertion(options, ORIGIN));
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('PASSKEY_UNKNOWN_CREDENTIAL');
  });

  // Regression: ?email= listed the account's credential ids (allowCredentials) and sent none for an address without
  // passkeys or without an account, so anyone could tell which addresses use passkeys and collect their ids.
  it('answers ?email= alike for an account with passkeys, one without and no account: no credential ids', async () => {
    const withPasskey = await registerUser(t.app);
    await addPasskey(t.app, withPasskey.token, createSoftAuthenticator());
    const without = await registerUser(t.app);
    const shapes = [];
    for (const email of [withPasskey.email, without.email, 'nobody@example.com']) {
      const { challenge, ...rest } = await authenticationOptions(t.app, email);
      expect(challenge).toMatch(/^[\w-]{20,}$/);
      shapes.push(rest);
    }
    expect(shapes[0]).not.toHaveProperty('allowCredentials');
    expect(shapes[1]).toEqual(shapes[0]);
    expect(shapes[2]).toEqual(shapes[0]);
  });
});

describe('passkey management', () => {
  it('lists, renames and deletes the signed-in user’s passkeys', async () => {
    const user = await registerUser(t.app);
    const a = await addPasskey(t.app, user.token, createSoftAuthenticator());
    const authenticator = createSoftAuthenticator();
    const b = await addPasskey(t.app, user.token, authenticator);
    const auth = { authorization: `Bearer ${user.token}` };

    const list = await t.app.inject({ method: 'GET', url: '/auth/passkeys', headers: auth });
    expect(list.statusCode).toBe(200);
    expect(list.json().passkeys.map((p: { id: string }) => p.id)).toEqual([a.id, b.id]);
    expect(JSON.stringify(list.json())).not.toContain('credential_public_key');

    const renamed = await t.app.inject({
      method: 'PATCH',
      url: `/auth/passkeys/${a.id}`,
      headers: auth,
      payload: { name: 'Phone' },
    });
    expect(renamed.statusCode).toBe(200);
    expect(renamed.json().passkey).toMatchObject({ id: a.id, name: 'Phone' });

    const deleted = await t.app.inject({ method: 'DELETE', url: `/auth/passkeys/${b.id}`, headers: auth });
    expect(deleted.statusCode).toBe(200);
    const { rows } = await t.db.query<{ id: string; name: string }>(
      'SELECT id, name FROM passkeys WHERE user_id = $1',
      [user.userId],
    );
    expect(rows).toEqual([{ id: a.id, name: 'Phone' }]);
    const { rows: events } = await t.db.query(
      `SELECT 1 FROM auth_audit_log WHERE event = 'passkey.removed' AND user_id = $1`,
      [user.userId],
    );
    expect(events).toHaveLength(1);

    // The deleted passkey no longer signs in.
    const res = await postAuthentication(
      t.app,
      await assertion(t.app, authenticator, { credentialId: b.credentialId }),
    );
    expect(res.json().error.code).toBe('PASSKEY_UNKNOWN_CREDENTIAL');
  });

  it('rejects an empty name', async () => {
    const user = await registerUser(t.app);
    const { id } = await addPasskey(t.app, user.token, createSoftAuthenticator());
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/auth/passkeys/${id}`,
      headers: { authorization: `Bearer ${user.token}` },
      payload: { name: '   ' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('VALIDATION_FAILED');
  });
});

describe("Better Auth's own passkey routes", () => {
  it('are not served: they skip user verification, the recent sign-in and the audit rows of the design routes', async () => {
    const user = await registerUser(t.app);
    await addPasskey(t.app, user.token, createSoftAuthenticator());
    for (const url of ['/api/auth/passkey/generate-register-options', '/api/auth/passkey/list-user-passkeys']) {
      const res = await t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${user.token}` } });
      expect(res.statusCode).toBe(404);
    }
    const res = await t.app.inject({ method: 'GET', url: '/api/auth/passkey/generate-authenticate-options' });
    expect(res.json().error.code).toBe('NOT_FOUND');
  });
});

describe('vendor module', () => {
  it('serves @simplewebauthn/browser as an ES module, and nothing outside it', async () => {
    const entry = await t.app.inject({ method: 'GET', url: '/vendor/simplewebauthn-browser.js' });
    expect(entry.statusCode).toBe(200);
    expect(entry.headers['content-type']).toMatch(/^text\/javascript/);
    const target = /from '\.\/(simplewebauthn-browser\/[^']+)'/.exec(entry.body)?.[1];
    const mod = await t.app.inject({ method: 'GET', url: `/vendor/${target}` });
    expect(mod.statusCode).toBe(200);
    expect(mod.body).toContain('startRegistration');
    for (const path of ['../package.json', '..%2Fpackage.json', 'index.d.ts', '/etc/passwd']) {
      const res = await t.app.inject({ method: 'GET', url: `/vendor/simplewebauthn-browser/${path}` });
      expect(res.statusCode).toBe(404);
    }
  });
});
