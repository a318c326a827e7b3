import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type WebAuthnCredential,
} from '@simplewebauthn/server';
import { decodeAttestationObject } from '@simplewebauthn/server/helpers';
import { describe, expect, it } from 'vitest';
import {
  createSoftAuthenticator,
  type SoftAuthenticator,
  type SoftAuthenticatorAlgorithm,
} from './soft-authenticator.ts';

const RP_ID = 'auth.example.test';
const ORIGIN = `https://${RP_ID}`;

async function register(authenticator: SoftAuthenticator, userName = 'alice'): Promise<WebAuthnCredential> {
  const options = await generateRegistrationOptions({
    rpName: 'Auth Gateway Test',
    rpID: RP_ID,
    userName,
    userID: new TextEncoder().encode(`user-${userName}`),
  });
  const response = authenticator.createCredential(options, ORIGIN);
  const result = await verifyRegistrationResponse({
    response,
    expectedChallenge: options.challenge,
    expectedOrigin: ORIGIN,
    expectedRPID: RP_ID,
  });
  expect(result.verified).toBe(true);
  if (!result.registrationInfo) throw new Error('no registrationInfo');
  return result.registrationInfo.credential;
}

async function authenticate(
  authenticator: SoftAuthenticator,
  credential: WebAuthnCredential,
  opts: Parameters<SoftAuthenticator['getAssertion']>[2] = {},
  allow = true,
) {
  const options = await generateAuthenticationOptions({
    rpID: RP_ID,
    allowCredentials: allow ? [{ id: credential.id }] : [],
  });
  const response = authenticator.getAssertion(options, ORIGIN, opts);
  return {
    response,
    verify: () =>
      verifyAuthenticationResponse({
        response,
        expectedChallenge: options.challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        credential,
      }),
  };
}

describe.each<[SoftAuthenticatorAlgorithm, number]>([
  ['ES256', -7],
  ['Ed25519', -8],
])('soft authenticator (%s)', (algorithm, coseAlg) => {
  it('produces a registration response that the real verifier accepts', async () => {
    const aaguid = '01020304-0506-0708-090a-0b0c0d0e0f10';
    const authenticator = createSoftAuthenticator({ algorithm, aaguid });
    const userID = new TextEncoder().encode('user-42');
    const options = await generateRegistrationOptions({
      rpName: 'Auth Gateway Test',
      rpID: RP_ID,
      userName: 'bob',
      userID,
    });
    const response = authenticator.createCredential(options, ORIGIN);

    expect(response.id).toBe(response.rawId);
    expect(response.type).toBe('public-key');
    expect(response.clientExtensionResults).toEqual({});
    expect(response.authenticatorAttachment).toBe('platform');
    expect(response.response.publicKeyAlgorithm).toBe(coseAlg);
    expect(response.response.transports).toEqual(['internal']);
    for (const value of [
      response.id,
      response.response.clientDataJSON,
      response.response.attestationObject,
      response.response.publicKey,
      response.response.authenticatorData,
    ]) {
      expect(value).toMatch(/^[A-Za-z0-9_-]+$/);
    }
    expect(JSON.parse(Buffer.from(response.response.clientDataJSON, 'base64url').toString())).toEqual({
      type: 'webauthn.create',
      challenge: options.challenge,
      origin: ORIGIN,
      crossOrigin: false,
    });
    const attObj = decodeAttestationObject(
      new Uint8Array(Buffer.from(response.response.attestationObject, 'base64url')),
    );
    expect(attObj.get('fmt')).toBe('none');
    expect(attObj.get('attStmt').size).toBe(0);

    const result = await verifyRegistrationResponse({
      response,
      expectedChallenge: options.challenge,
      expectedOrigin: ORIGIN,
      expectedRPID: RP_ID,
    });
    expect(result.verified).toBe(true);
    const info = result.registrationInfo;
    if (!info) throw new Error('no registrationInfo');
    expect(info.fmt).toBe('none');
    expect(info.aaguid).toBe(aaguid);
    expect(info.userVerified).toBe(true);
    expect(info.rpID).toBe(RP_ID);
    expect(info.credential.id).toBe(response.id);
    expect(info.credential.counter).toBe(0);
    expect(info.credentialDeviceType).toBe('singleDevice');
    expect(info.credentialBackedUp).toBe(false);
    expect(authenticator.credentials).toEqual([response.id]);
    const stored = authenticator.getCredential(response.id);
    expect(stored?.userHandle).toBe(options.user.id);
    expect(stored?.rpId).toBe(RP_ID);
    expect(Buffer.from(stored?.cosePublicKey ?? [])).toEqual(Buffer.from(info.credential.publicKey));
  });

  it('registration with a wrong origin, rpId or challenge is rejected', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const options = await generateRegistrationOptions({
      rpName: 'Auth Gateway Test',
      rpID: RP_ID,
      userName: 'carol',
    });
    const verify = (opts: Parameters<SoftAuthenticator['createCredential']>[2]) =>
      verifyRegistrationResponse({
        response: authenticator.createCredential(options, ORIGIN, opts),
        expectedChallenge: options.challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
      });
    await expect(verify({ originOverride: 'https://evil.example' })).rejects.toThrow(/origin/);
    await expect(verify({ rpIdOverride: 'evil.example' })).rejects.toThrow(/RP ID/);
    await expect(verify({ challengeOverride: 'bm90LXRoZS1jaGFsbGVuZ2U' })).rejects.toThrow(/challenge/);
    await expect(verify({ userVerified: false })).rejects.toThrow(/User verification/);
  });

  it('produces assertions that verify, with an increasing counter', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);

    const first = await authenticate(authenticator, credential);
    expect(JSON.parse(Buffer.from(first.response.response.clientDataJSON, 'base64url').toString())).toMatchObject({
      type: 'webauthn.get',
      origin: ORIGIN,
      crossOrigin: false,
    });
    expect(first.response.response.userHandle).toBe(authenticator.getCredential(credential.id)?.userHandle);
    const r1 = await first.verify();
    expect(r1.verified).toBe(true);
    expect(r1.authenticationInfo.newCounter).toBe(1);
    expect(r1.authenticationInfo.userVerified).toBe(true);
    credential.counter = r1.authenticationInfo.newCounter;

    const second = await authenticate(authenticator, credential);
    const r2 = await second.verify();
    expect(r2.verified).toBe(true);
    expect(r2.authenticationInfo.newCounter).toBe(2);
    expect(authenticator.getCredential(credential.id)?.signCount).toBe(2);
  });

  it('supports usernameless (discoverable) assertions', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    const { response, verify } = await authenticate(authenticator, credential, {}, false);
    expect(response.id).toBe(credential.id);
    expect((await verify()).verified).toBe(true);
  });

  it('a tampered signature does not verify', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    const { verify } = await authenticate(authenticator, credential, {
      tamperSignature: true,
    });
    // v13 returns verified:false (it does not throw) for a bad signature.
    const result = await verify();
    expect(result.verified).toBe(false);
  });

  it('a wrong origin is rejected', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    const { verify } = await authenticate(authenticator, credential, {
      originOverride: 'https://phishing.example',
    });
    await expect(verify()).rejects.toThrow(/Unexpected authentication response origin "https:\/\/phishing\.example"/);
  });

  it('a wrong rpId is rejected', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    const { verify } = await authenticate(authenticator, credential, {
      rpIdOverride: 'phishing.example',
    });
    await expect(verify()).rejects.toThrow(/Unexpected RP ID hash/);
  });

  it('a wrong challenge is rejected', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    const { verify } = await authenticate(authenticator, credential, {
      challengeOverride: 'c3RhbGUtY2hhbGxlbmdl',
    });
    await expect(verify()).rejects.toThrow(/challenge/);
  });

  it('missing user verification is rejected by default', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    const { verify } = await authenticate(authenticator, credential, {
      userVerified: false,
    });
    await expect(verify()).rejects.toThrow(/User verification required/);
  });

  it('a forced lower (or equal) counter is rejected', async () => {
    const authenticator = createSoftAuthenticator({ algorithm });
    const credential = await register(authenticator);
    credential.counter = 5;

    const lower = await authenticate(authenticator, credential, {
      signCount: 3,
    });
    await expect(lower.verify()).rejects.toThrow('Response counter value 3 was lower than expected 5');
    const equal = await authenticate(authenticator, credential, {
      signCount: 5,
    });
    await expect(equal.verify()).rejects.toThrow('Response counter value 5 was lower than expected 5');
    // A counter of 0 against a stored non-zero counter is also rejected...
    const zero = await authenticate(authenticator, credential, {
      signCount: 0,
    });
    await expect(zero.verify()).rejects.toThrow('Response counter value 0 was lower than expected 5');
    // ...but 0 against a stored 0 is accepted (authenticators without counters).
    credential.counter = 0;
    const bothZero = await authenticate(authenticator, credential, {
      signCount: 0,
    });
    const result = await bothZero.verify();
    expect(result.verified).toBe(true);
    expect(result.authenticationInfo.newCounter).toBe(0);
    // The forced value became the authenticator's counter.
    const next = await authenticate(authenticator, credential);
    expect((await next.verify()).authenticationInfo.newCounter).toBe(1);
  });

  it('a cloned authenticator is detected through the counter', async () => {
    const original = createSoftAuthenticator({ algorithm });
    const credential = await register(original);
    const cloned = original.clone();
    expect(cloned.credentials).toEqual(original.credentials);

    const fromOriginal = await authenticate(original, credential);
    const r1 = await fromOriginal.verify();
    expect(r1.verified).toBe(true);
    credential.counter = r1.authenticationInfo.newCounter;

    const fromClone = await authenticate(cloned, credential);
    await expect(fromClone.verify()).rejects.toThrow('Response counter value 1 was lower than expected 1');
    expect(original.getCredential(credential.id)?.signCount).toBe(1);
    expect(cloned.getCredential(credential.id)?.signCount).toBe(1);
  });
});

describe('soft authenticator credential selection', () => {
  it('picks the allowed / named credential and respects rpId', async () => {
    const authenticator = createSoftAuthenticator();
    const alice = await register(authenticator, 'alice');
    const bob = await register(authenticator, 'bob');
    expect(authenticator.credentials).toEqual([alice.id, bob.id]);

    const { response, verify } = await authenticate(authenticator, bob);
    expect(response.id).toBe(bob.id);
    expect((await verify()).verified).toBe(true);

    const named = authenticator.getAssertion(await generateAuthenticationOptions({ rpID: RP_ID }), ORIGIN, {
      credentialId: bob.id,
    });
    expect(named.id).toBe(bob.id);

    const otherRp = await generateAuthenticationOptions({
      rpID: 'other.example',
    });
    expect(() => authenticator.getAssertion(otherRp, 'https://other.example')).toThrow(/NotAllowedError/);
  });

  it('non-discoverable credentials need allowCredentials', async () => {
    const authenticator = createSoftAuthenticator();
    const options = await generateRegistrationOptions({
      rpName: 'Auth Gateway Test',
      rpID: RP_ID,
      userName: 'dave',
      authenticatorSelection: { residentKey: 'discouraged' },
    });
    const reg = authenticator.createCredential(options, ORIGIN);
    expect(authenticator.getCredential(reg.id)?.residentKey).toBe(false);
    const usernameless = await generateAuthenticationOptions({ rpID: RP_ID });
    expect(() => authenticator.getAssertion(usernameless, ORIGIN)).toThrow(/NotAllowedError/);
    const withAllow = await generateAuthenticationOptions({
      rpID: RP_ID,
      allowCredentials: [{ id: reg.id }],
    });
    expect(authenticator.getAssertion(withAllow, ORIGIN).id).toBe(reg.id);
  });

  it('refuses excluded credentials and unsupported algorithms', async () => {
    const authenticator = createSoftAuthenticator({ algorithm: 'Ed25519' });
    const first = await register(authenticator);
    const excluded = await generateRegistrationOptions({
      rpName: 'Auth Gateway Test',
      rpID: RP_ID,
      userName: 'alice',
      excludeCredentials: [{ id: first.id }],
    });
    expect(() => authenticator.createCredential(excluded, ORIGIN)).toThrow(/InvalidStateError/);
    const es256Only = await generateRegistrationOptions({
      rpName: 'Auth Gateway Test',
      rpID: RP_ID,
      userName: 'erin',
      supportedAlgorithmIDs: [-7],
    });
    expect(() => authenticator.createCredential(es256Only, ORIGIN)).toThrow(/NotSupportedError/);
  });

  it('clone() is independent of the original', async () => {
    const original = createSoftAuthenticator();
    const credential = await register(original);
    const cloned = original.clone();
    await register(cloned, 'zoe');
    expect(cloned.credentials).toHaveLength(2);
    expect(original.credentials).toEqual([credential.id]);
    expect(original.removeCredential(credential.id)).toBe(true);
    expect(original.credentials).toEqual([]);
    expect(cloned.credentials).toContain(credential.id);
  });
});
