/**
 * A software WebAuthn authenticator (plus the "client"/browser part) for tests.
 *
 * It produces exactly the JSON shapes that @simplewebauthn/browser's
 * `startRegistration()` / `startAuthentication()` return, backed by real key
 * pairs (node:crypto), real authenticator data and a real CBOR `none`
 * attestation object, so responses verify against @simplewebauthn/server.
 *
 * Knobs for negative tests: wrong rpId / origin / challenge, tampered
 * signatures, forced signature counters (cloned authenticators) and `clone()`.
 */
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  AuthenticatorTransportFuture,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';

export type SoftAuthenticatorAlgorithm = 'ES256' | 'Ed25519';

export interface SoftAuthenticatorOptions {
  /** Key algorithm for new credentials. Default `ES256` (COSE -7); `Ed25519` is COSE -8. */
  algorithm?: SoftAuthenticatorAlgorithm;
  /** AAGUID as a UUID string (dashes optional). Default all-zero. */
  aaguid?: string;
  /** `authenticatorAttachment` reported in responses. Default `platform`. */
  authenticatorAttachment?: 'platform' | 'cross-platform';
  /** `response.transports` reported at registration. Default `["internal"]`. */
  transports?: AuthenticatorTransportFuture[];
}

export interface CreateCredentialOptions {
  /** Set the UV flag. Default true. (UP is always set.) */
  userVerified?: boolean;
  /**
   * Store the credential as discoverable (usable without allowCredentials).
   * Default: derived from `authenticatorSelection.residentKey` /
   * `requireResidentKey` (`discouraged` -> false), otherwise true.
   */
  residentKey?: boolean;
  /** Hash this rpId into authData instead of the real one (the credential is still stored under the real rpId). */
  rpIdOverride?: string;
  /** Put this origin into clientDataJSON instead of `origin`. */
  originOverride?: string;
  /** Put this (base64url) challenge into clientDataJSON instead of the options' challenge. */
  challengeOverride?: string;
}

export interface GetAssertionOptions {
  /** Use this stored credential (must exist, and be allowed if allowCredentials is given). */
  credentialId?: string;
  /** Set the UV flag. Default true. (UP is always set.) */
  userVerified?: boolean;
  /**
   * Force the signature counter to this value instead of incrementing by 1.
   * The credential's stored counter becomes this value.
   */
  signCount?: number;
  /** Hash this rpId into authData instead of the real one (credential lookup still uses the real rpId). */
  rpIdOverride?: string;
  /** Put this origin into clientDataJSON instead of `origin`. */
  originOverride?: string;
  /** Put this (base64url) challenge into clientDataJSON instead of the options' challenge. */
  challengeOverride?: string;
  /** Flip a bit in the produced signature (the DER structure stays parseable). */
  tamperSignature?: boolean;
}

/** Read-only view of a stored credential. */
export interface SoftCredentialInfo {
  id: string;
  rpId: string;
  /** base64url, as given in `creationOptions.user.id` */
  userHandle: string;
  userName: string;
  signCount: number;
  residentKey: boolean;
  algorithm: SoftAuthenticatorAlgorithm;
  /** COSE alg identifier: -7 (ES256) or -8 (EdDSA) */
  coseAlgorithm: number;
  /** COSE_Key bytes, as @simplewebauthn/server stores them in `credential.publicKey` */
  cosePublicKey: Uint8Array;
  /** SubjectPublicKeyInfo DER bytes */
  spkiPublicKey: Uint8Array;
}

export interface SoftAuthenticator {
  readonly algorithm: SoftAuthenticatorAlgorithm;
  /** Stored credential ids (base64url), in creation order. */
  readonly credentials: string[];
  createCredential(
    creationOptions: PublicKeyCredentialCreationOptionsJSON,
    origin: string,
    opts?: CreateCredentialOptions,
  ): RegistrationResponseJSON;
  getAssertion(
    requestOptions: PublicKeyCredentialRequestOptionsJSON,
    origin: string,
    opts?: GetAssertionOptions,
  ): AuthenticationResponseJSON;
  /** Details of a stored credential, or undefined. */
  getCredential(id: string): SoftCredentialInfo | undefined;
  /** Forget a stored credential (e.g. the user deleted the passkey). Returns true if it existed. */
  removeCredential(id: string): boolean;
  /** Independent copy with the same keys and counters (a "cloned" authenticator). */
  clone(): SoftAuthenticator;
}

interface StoredCredential {
  id: string;
  idBytes: Buffer;
  rpId: string;
  userHandle: string;
  userName: string;
  signCount: number;
  residentKey: boolean;
  algorithm: SoftAuthenticatorAlgorithm;
  privateKey: KeyObject;
  cosePublicKey: Uint8Array;
  spkiPublicKey: Buffer;
}

const COSE_ALG: Record<SoftAuthenticatorAlgorithm, number> = {
  ES256: -7,
  Ed25519: -8,
};

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;

const b64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

const fromB64url = (value: string): Buffer => Buffer.from(value, 'base64url');

const sha256 = (data: Uint8Array | string): Buffer => createHash('sha256').update(data).digest();

function parseAaguid(aaguid: string | undefined): Buffer {
  if (aaguid === undefined) return Buffer.alloc(16);
  const hex = aaguid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) {
    throw new Error(`Invalid AAGUID "${aaguid}": expected a UUID`);
  }
  return Buffer.from(hex, 'hex');
}

function rpIdFromOrigin(origin: string): string {
  return new URL(origin).hostname;
}

function clientDataJSON(type: 'webauthn.create' | 'webauthn.get', challenge: string, origin: string): Buffer {
  return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }), 'utf8');
}

function generateKey(algorithm: SoftAuthenticatorAlgorithm): {
  privateKey: KeyObject;
  cosePublicKey: Uint8Array;
  spkiPublicKey: Buffer;
} {
  if (algorithm === 'ES256') {
    const { privateKey, publicKey } = generateKeyPairSync('ec', {
      namedCurve: 'P-256',
    });
    const jwk = publicKey.export({ format: 'jwk' });
    if (!jwk.x || !jwk.y) throw new Error('EC public key export failed');
    const cose = new Map<number, number | Uint8Array>([
      [1, 2], // kty: EC2
      [3, COSE_ALG.ES256], // alg: ES256
      [-1, 1], // crv: P-256
      [-2, fromB64url(jwk.x)], // x
      [-3, fromB64url(jwk.y)], // y
    ]);
    return {
      privateKey,
      cosePublicKey: isoCBOR.encode(cose),
      spkiPublicKey: publicKey.export({ format: 'der', type: 'spki' }),
    };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  if (!jwk.x) throw new Error('Ed25519 public key export failed');
  const cose = new Map<number, number | Uint8Array>([
    [1, 1], // kty: OKP
    [3, COSE_ALG.Ed25519], // alg: EdDSA
    [-1, 6], // crv: Ed25519
    [-2, fromB64url(jwk.x)], // x
  ]);
  return {
    privateKey,
    cosePublicKey: isoCBOR.encode(cose),
    spkiPublicKey: publicKey.export({ format: 'der', type: 'spki' }),
  };
}

function authenticatorData(rpId: string, flags: number, signCount: number, attested?: Buffer): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(signCount >>> 0);
  return Buffer.concat([sha256(rpId), Buffer.from([flags]), counter, ...(attested ? [attested] : [])]);
}

function signData(cred: StoredCredential, data: Buffer): Buffer {
  // ES256: node emits DER-encoded ECDSA (what WebAuthn expects).
  // Ed25519: raw 64-byte signature, no pre-hash.
  return cred.algorithm === 'ES256' ? sign('sha256', data, cred.privateKey) : sign(null, data, cred.privateKey);
}

function copyCredential(c: StoredCredential): StoredCredential {
  return {
    ...c,
    idBytes: Buffer.from(c.idBytes),
    cosePublicKey: Uint8Array.from(c.cosePublicKey),
    spkiPublicKey: Buffer.from(c.spkiPublicKey),
  };
}

function createFrom(options: SoftAuthenticatorOptions, initial: StoredCredential[]): SoftAuthenticator {
  const algorithm = options.algorithm ?? 'ES256';
  const aaguid = parseAaguid(options.aaguid);
  const attachment = options.authenticatorAttachment ?? 'platform';
  const transports = options.transports ?? ['internal'];
  const store: StoredCredential[] = initial;

  const find = (id: string) => store.find((c) => c.id === id);

  const authenticator: SoftAuthenticator = {
    algorithm,

    get credentials() {
      return store.map((c) => c.id);
    },

    createCredential(creationOptions, origin, opts = {}) {
      const rpId = creationOptions.rp.id ?? rpIdFromOrigin(origin);
      const coseAlg = COSE_ALG[algorithm];
      const params = creationOptions.pubKeyCredParams ?? [];
      if (params.length > 0 && !params.some((p) => p.alg === coseAlg)) {
        throw new Error(`NotSupportedError: RP does not accept COSE alg ${coseAlg} (${algorithm})`);
      }
      for (const excluded of creationOptions.excludeCredentials ?? []) {
        const existing = find(excluded.id);
        if (existing && existing.rpId === rpId) {
          throw new Error('InvalidStateError: authenticator already holds an excluded credential');
        }
      }

      const selection = creationOptions.authenticatorSelection;
      const residentKey =
        opts.residentKey ??
        (selection?.residentKey ? selection.residentKey !== 'discouraged' : (selection?.requireResidentKey ?? true));
      const userVerified = opts.userVerified ?? true;

      const key = generateKey(algorithm);
      const idBytes = randomBytes(32);
      const cred: StoredCredential = {
        id: b64url(idBytes),
        idBytes,
        rpId,
        userHandle: creationOptions.user.id,
        userName: creationOptions.user.name,
        signCount: 0,
        residentKey,
        algorithm,
        ...key,
      };

      const idLength = Buffer.alloc(2);
      idLength.writeUInt16BE(idBytes.length);
      const attested = Buffer.concat([aaguid, idLength, idBytes, key.cosePublicKey]);
      const flags = FLAG_UP | (userVerified ? FLAG_UV : 0) | FLAG_AT;
      const authData = authenticatorData(opts.rpIdOverride ?? rpId, flags, cred.signCount, attested);
      const attestationObject = isoCBOR.encode(
        new Map<string, string | Uint8Array | Map<string, number>>([
          ['fmt', 'none'],
          ['attStmt', new Map<string, number>()],
          ['authData', authData],
        ]),
      );
      const clientData = clientDataJSON(
        'webauthn.create',
        opts.challengeOverride ?? creationOptions.challenge,
        opts.originOverride ?? origin,
      );

      store.push(cred);

      return {
        id: cred.id,
        rawId: cred.id,
        type: 'public-key',
        response: {
          clientDataJSON: b64url(clientData),
          attestationObject: b64url(attestationObject),
          transports: [...transports],
          publicKeyAlgorithm: coseAlg,
          publicKey: b64url(key.spkiPublicKey),
          authenticatorData: b64url(authData),
        },
        clientExtensionResults: {},
        authenticatorAttachment: attachment,
      };
    },

    getAssertion(requestOptions, origin, opts = {}) {
      const rpId = requestOptions.rpId ?? rpIdFromOrigin(origin);
      const allowed = requestOptions.allowCredentials ?? [];
      const candidates = store.filter(
        (c) =>
          c.rpId === rpId &&
          (allowed.length > 0 ? allowed.some((a) => a.id === c.id) : c.residentKey || c.id === opts.credentialId),
      );
      const cred = opts.credentialId !== undefined ? candidates.find((c) => c.id === opts.credentialId) : candidates[0];
      if (!cred) {
        throw new Error(
          `NotAllowedError: no matching credential for rpId "${rpId}"` +
            (opts.credentialId ? ` and id "${opts.credentialId}"` : ''),
        );
      }

      cred.signCount = opts.signCount !== undefined ? opts.signCount : cred.signCount + 1;
      const userVerified = opts.userVerified ?? true;
      const flags = FLAG_UP | (userVerified ? FLAG_UV : 0);
      const authData = authenticatorData(opts.rpIdOverride ?? rpId, flags, cred.signCount);
      const clientData = clientDataJSON(
        'webauthn.get',
        opts.challengeOverride ?? requestOptions.challenge,
        opts.originOverride ?? origin,
      );
      const signature = signData(cred, Buffer.concat([authData, sha256(clientData)]));
      if (opts.tamperSignature) {
        // Last byte is payload (end of s / of the Ed25519 signature), so DER stays valid.
        const last = signature.length - 1;
        signature[last] = (signature[last] ?? 0) ^ 0x01;
      }

      return {
        id: cred.id,
        rawId: cred.id,
        type: 'public-key',
        response: {
          clientDataJSON: b64url(clientData),
          authenticatorData: b64url(authData),
          signature: b64url(signature),
          userHandle: cred.userHandle,
        },
        clientExtensionResults: {},
        authenticatorAttachment: attachment,
      };
    },

    getCredential(id) {
      const c = find(id);
      if (!c) return undefined;
      return {
        id: c.id,
        rpId: c.rpId,
        userHandle: c.userHandle,
        userName: c.userName,
        signCount: c.signCount,
        residentKey: c.residentKey,
        algorithm: c.algorithm,
        coseAlgorithm: COSE_ALG[c.algorithm],
        cosePublicKey: Uint8Array.from(c.cosePublicKey),
        spkiPublicKey: Uint8Array.from(c.spkiPublicKey),
      };
    },

    removeCredential(id) {
      const index = store.findIndex((c) => c.id === id);
      if (index < 0) return false;
      store.splice(index, 1);
      return true;
    },

    clone() {
      return createFrom(options, store.map(copyCredential));
    },
  };
  return authenticator;
}

/** Create an empty software authenticator. */
export function createSoftAuthenticator(opts: SoftAuthenticatorOptions = {}): SoftAuthenticator {
  return createFrom({ ...opts }, []);
}
