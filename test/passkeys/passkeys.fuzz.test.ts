import { randomBytes } from 'node:crypto';
import type { RegistrationResponseJSON } from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createSoftAuthenticator } from '../helpers/soft-authenticator.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';
import { addPasskey, assertion, ORIGIN, postAuthentication, postRegistration, registrationOptions } from './helpers.js';

// Hostile input: a real, valid response with one field replaced by anything. Always a 4xx JSON error, never a 500.
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const anyValue = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.integer(),
  fc.constant(null),
  fc.boolean(),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
);

function mutate(value: Record<string, unknown>, path: string[], replacement: unknown): Record<string, unknown> {
  const copy = structuredClone(value);
  let node: Record<string, unknown> = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  node[path[path.length - 1] as string] = replacement;
  return copy;
}

const assertionPaths = [
  ['id'],
  ['rawId'],
  ['type'],
  ['response'],
  ['response', 'clientDataJSON'],
  ['response', 'authenticatorData'],
  ['response', 'signature'],
  ['response', 'userHandle'],
  ['clientExtensionResults'],
];
const registrationPaths = [
  ['id'],
  ['response', 'clientDataJSON'],
  ['response', 'attestationObject'],
  ['response', 'transports'],
];

it('a mutated sign-in response gets a 4xx passkey error', async () => {
  const user = await registerUser(t.app);
  const authenticator = createSoftAuthenticator();
  await addPasskey(t.app, user.token, authenticator);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...assertionPaths), anyValue, async (path, replacement) => {
      const valid = (await assertion(t.app, authenticator)) as unknown as Record<string, unknown>;
      const res = await postAuthentication(t.app, mutate(valid, path, replacement));
      // Neither is signed by the authenticator: a client may drop or garble them without changing the outcome.
      if (res.statusCode === 200) {
        expect(['clientExtensionResults', 'userHandle']).toContain(path[path.length - 1]);
        return;
      }
      expect([400, 401]).toContain(res.statusCode);
      expect(res.json().success).toBe(false);
    }),
    { numRuns: 40 },
  );
});

it('a mutated registration response gets a 4xx passkey error and stores nothing', async () => {
  const user = await registerUser(t.app);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...registrationPaths), anyValue, async (path, replacement) => {
      const options = await registrationOptions(t.app, user.token);
      const valid = createSoftAuthenticator().createCredential(options, ORIGIN) as unknown as Record<string, unknown>;
      const res = await postRegistration(t.app, user.token, mutate(valid, path, replacement));
      // Replacing transports with a plausible array can leave the response valid.
      if (res.statusCode === 200) return;
      expect([400, 409]).toContain(res.statusCode);
      expect(res.json().error.code).toMatch(/^PASSKEY_/);
    }),
    { numRuns: 30 },
  );
  const { rows } = await t.db.query<{ transports: string }>('SELECT transports FROM passkeys WHERE user_id = $1', [
    user.userId,
  ]);
  for (const r of rows) expect(typeof r.transports).toBe('string');
});

/**
 * `credential` with the credential id inside its authenticator data replaced by `length` random bytes (the `none`
 * attestation signs nothing, so it still verifies); `id` and `rawId` are that id too when `matching`.
 */
function withCredentialId(credential: RegistrationResponseJSON, length: number, matching: boolean) {
  const attestation = isoCBOR.decodeFirst<Map<string, Uint8Array>>(
    Buffer.from(credential.response.attestationObject, 'base64url'),
  );
  const authData = Buffer.from(attestation.get('authData') ?? []);
  // rpIdHash (32) | flags (1) | counter (4) | aaguid (16) | credentialIdLength (2, big-endian) | credentialId | key
  const head = Buffer.from(authData.subarray(0, 55));
  head.writeUInt16BE(length, 53);
  const id = randomBytes(length);
  const edited = Buffer.concat([head, id, authData.subarray(55 + authData.readUInt16BE(53))]);
  attestation.set('authData', new Uint8Array(edited));
  const ids = matching ? { id: id.toString('base64url'), rawId: id.toString('base64url') } : {};
  return {
    ...credential,
    ...ids,
    response: {
      ...credential.response,
      attestationObject: Buffer.from(isoCBOR.encode(attestation)).toString('base64url'),
      authenticatorData: edited.toString('base64url'),
    },
  };
}

// Regression: an attested id past ~2700 bytes overflowed the unique index (a 500), and ids over WebAuthn's 1023 bytes,
// or other than the response's id, were stored.
it('an attested credential id over 1023 bytes, or other than the response’s id, is refused and not stored', async () => {
  const user = await registerUser(t.app);
  const attempt = async (length: number, matching: boolean) => {
    const options = await registrationOptions(t.app, user.token);
    const credential = withCredentialId(createSoftAuthenticator().createCredential(options, ORIGIN), length, matching);
    const res = await postRegistration(t.app, user.token, credential);
    return [res.statusCode, res.json().error?.code];
  };
  const refused = [400, 'PASSKEY_MALFORMED_CREDENTIAL'];
  expect(await attempt(4000, false)).toEqual(refused);
  expect(await attempt(64, false)).toEqual(refused);
  expect(await attempt(1024, true)).toEqual(refused);
  expect(await t.db.query('SELECT 1 FROM passkeys WHERE user_id = $1', [user.userId])).toMatchObject({ rowCount: 0 });
  // WebAuthn §6.5.1's largest id is accepted.
  expect(await attempt(1023, true)).toEqual([200, undefined]);
});
