import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPasskeyStore } from '../../src/passkeys/index.js';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import {
  addPasskey,
  assertion,
  ORIGIN,
  postAuthentication,
  postRegistration,
  registrationOptions,
  withStartingCounter,
} from './helpers.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** The counter sign-in compares against, as the store reads it (a number, whatever the driver returns for BIGINT). */
const storedCounter = async (credentialId: string) =>
  (await createPasskeyStore(t.db).findByCredentialId(credentialId))?.counter;

// Regression: passkeys.counter was INTEGER, but WebAuthn signature counters are unsigned 32-bit: a counter past
// 2147483647 failed with a 500, and since later counters are only higher, that passkey could never sign in again.
describe('signature counters above 2^31 - 1', () => {
  it('sign in, up to 4294967295, and keep refusing a counter that does not grow', async () => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    const { credentialId } = await addPasskey(t.app, user.token, authenticator);

    for (const signCount of [2147483647, 2147483648, 4294967295]) {
      const res = await postAuthentication(t.app, await assertion(t.app, authenticator, { signCount }));
      expect(res.statusCode, `counter ${signCount}: ${res.body}`).toBe(200);
      expect(res.json().userId).toBe(user.userId);
      expect(await storedCounter(credentialId)).toBe(signCount);
    }

    const again = await postAuthentication(t.app, await assertion(t.app, authenticator, { signCount: 4294967295 }));
    expect(again.statusCode).toBe(401);
    expect(again.json().error.code).toBe('PASSKEY_COUNTER_REGRESSION');
    expect(await storedCounter(credentialId)).toBe(4294967295);
  });

  it.each([2147483648, 4294967295])('registers a credential whose counter starts at %i', async (start) => {
    const user = await registerUser(t.app);
    const authenticator = createSoftAuthenticator();
    const options = await registrationOptions(t.app, user.token);
    const credential = withStartingCounter(authenticator.createCredential(options, ORIGIN), start);
    const res = await postRegistration(t.app, user.token, credential, 'Security key');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().passkey).toMatchObject({ name: 'Security key' });
    expect(await storedCounter(credential.id)).toBe(start);

    const list = await t.app.inject({
      method: 'GET',
      url: '/auth/passkeys',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(list.json().passkeys.map((p: { id: string }) => p.id)).toEqual([res.json().passkey.id]);

    // The counter it started with counts: the same value again is refused, a higher one signs in.
    const same = await postAuthentication(t.app, await assertion(t.app, authenticator, { signCount: start }));
    expect(same.json().error?.code).toBe('PASSKEY_COUNTER_REGRESSION');
    if (start < 4294967295) {
      const next = await postAuthentication(t.app, await assertion(t.app, authenticator, { signCount: start + 1 }));
      expect(next.statusCode, next.body).toBe(200);
      expect(await storedCounter(credential.id)).toBe(start + 1);
    }
  });
});
