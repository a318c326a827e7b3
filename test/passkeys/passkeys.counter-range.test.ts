import type * as SimpleWebAuthn from '@simplewebauthn/server';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPasskeyStore } from '../../src/passkeys/index.js';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import { addPasskey, assertion, ORIGIN, postAuthentication, postRegistration, registrationOptions } from './helpers.js';

// The signature counter is 4 bytes of the signed authenticator data, so @simplewebauthn/server can only report
// 0..4294967295. What it reports is still input the gateway stores: a counter outside that range (a library that
// parsed it otherwise) must be refused as a bad credential, not stored (BIGINT would take 2^32) or turned into a 500.
// The library is wrapped here to report such counters from otherwise valid ceremonies.
const forced = vi.hoisted(() => ({ counter: undefined as number | undefined }));
vi.mock('@simplewebauthn/server', async (importOriginal) => {
  const real = await importOriginal<typeof SimpleWebAuthn>();
  return {
    ...real,
    async verifyRegistrationResponse(...args: Parameters<typeof real.verifyRegistrationResponse>) {
      const result = await real.verifyRegistrationResponse(...args);
      if (forced.counter !== undefined && result.registrationInfo) {
        result.registrationInfo.credential.counter = forced.counter;
      }
      return result;
    },
    async verifyAuthenticationResponse(...args: Parameters<typeof real.verifyAuthenticationResponse>) {
      const result = await real.verifyAuthenticationResponse(...args);
      if (forced.counter !== undefined) result.authenticationInfo.newCounter = forced.counter;
      return result;
    },
  };
});

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());
afterEach(() => {
  forced.counter = undefined;
});

const OUT_OF_RANGE = [4294967296, -1, 2 ** 53, 1.5, Number.NaN];

const lastRefusal = async (userId: string) =>
  (
    await t.db.query<{ details: { reason: string; ceremony: string } }>(
      `SELECT details FROM auth_audit_log WHERE event = 'passkey.refused' AND user_id = $1 ORDER BY id DESC LIMIT 1`,
      [userId],
    )
  ).rows[0]?.details;

describe('signature counters outside 0..2^32 - 1', () => {
  it.each(OUT_OF_RANGE)('a registration reporting %d is refused as malformed, nothing stored', async (counter) => {
    const user = await registerUser(t.app);
    const options = await registrationOptions(t.app, user.token);
    const credential = createSoftAuthenticator().createCredential(options, ORIGIN);
    forced.counter = counter;
    const res = await postRegistration(t.app, user.token, credential);
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_MALFORMED_CREDENTIAL');
    expect(await createPasskeyStore(t.db).findByCredentialId(credential.id)).toBeNull();
    expect(await lastRefusal(user.userId)).toEqual({
      reason: 'PASSKEY_MALFORMED_CREDENTIAL',
      ceremony: 'registration',
    });
  });

  it.each(OUT_OF_RANGE)('a sign-in reporting %d is refused as malformed, the counter kept', async (counter) => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    const { credentialId } = await addPasskey(t.app, user.token, authenticator);
    const signed = await assertion(t.app, authenticator);
    forced.counter = counter;
    const res = await postAuthentication(t.app, signed);
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error.code).toBe('PASSKEY_MALFORMED_CREDENTIAL');
    expect((await createPasskeyStore(t.db).findByCredentialId(credentialId))?.counter).toBe(0);
    expect(await lastRefusal(user.userId)).toMatchObject({
      reason: 'PASSKEY_MALFORMED_CREDENTIAL',
      ceremony: 'authentication',
    });
  });
});
