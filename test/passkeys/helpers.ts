import type {
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import type { CreateCredentialOptions, GetAssertionOptions, SoftAuthenticator } from '../helpers/soft-authenticator.js';
import type { TestApp } from '../helpers/test-app.js';

export const ORIGIN = 'http://localhost:3000';

type App = TestApp['app'];

export async function registrationOptions(app: App, token: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const res = await app.inject({
    method: 'POST',
    url: '/auth/passkey/register/options',
    headers: { authorization: `Bearer ${token}` },
  });
  if (res.statusCode !== 200) throw new Error(`register options: ${res.statusCode} ${res.body}`);
  return res.json();
}

export async function authenticationOptions(app: App, email?: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const query = email ? `?email=${encodeURIComponent(email)}` : '';
  const res = await app.inject({ method: 'GET', url: `/api/auth/passkey/authenticate/options${query}` });
  if (res.statusCode !== 200) throw new Error(`authenticate options: ${res.statusCode} ${res.body}`);
  return res.json();
}

export function postRegistration(app: App, token: string, credential: unknown, name?: string) {
  return app.inject({
    method: 'POST',
    url: '/api/auth/passkey/register',
    headers: { authorization: `Bearer ${token}` },
    payload: { credential, ...(name ? { name } : {}) },
  });
}

export function postAuthentication(app: App, credential: unknown, url = '/auth/passkey/authenticate') {
  return app.inject({ method: 'POST', url, payload: { credential } });
}

/** Registers a passkey on `authenticator` for the user; returns the stored passkey's id and credential id. */
export async function addPasskey(
  app: App,
  token: string,
  authenticator: SoftAuthenticator,
  opts: CreateCredentialOptions = {},
): Promise<{ id: string; credentialId: string }> {
  const options = await registrationOptions(app, token);
  const credential = authenticator.createCredential(options, ORIGIN, opts);
  const res = await postRegistration(app, token, credential);
  if (res.statusCode !== 200) throw new Error(`register: ${res.statusCode} ${res.body}`);
  return { id: res.json().passkey.id, credentialId: credential.id };
}

/** A fresh usernameless assertion from `authenticator`. */
export async function assertion(app: App, authenticator: SoftAuthenticator, opts: GetAssertionOptions = {}) {
  const options = await authenticationOptions(app);
  return authenticator.getAssertion(options, ORIGIN, opts);
}

/**
 * `credential` (a registration response) with authenticator data that starts the signature counter at `counter`: the
 * soft authenticator starts at 0, a real one need not (a security key may keep one counter for every site). The
 * `none` attestation signs nothing, so the edited response still verifies.
 */
export function withStartingCounter(credential: RegistrationResponseJSON, counter: number): RegistrationResponseJSON {
  const attestation = isoCBOR.decodeFirst<Map<string, Uint8Array>>(
    Buffer.from(credential.response.attestationObject, 'base64url'),
  );
  const authData = Buffer.from(attestation.get('authData') ?? []);
  // The counter follows the rpIdHash (32 bytes) and the flags (1 byte), big-endian.
  authData.writeUInt32BE(counter, 33);
  attestation.set('authData', new Uint8Array(authData));
  return {
    ...credential,
    response: {
      ...credential.response,
      attestationObject: Buffer.from(isoCBOR.encode(attestation)).toString('base64url'),
      authenticatorData: authData.toString('base64url'),
    },
  };
}
