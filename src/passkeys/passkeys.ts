import { randomBytes } from 'node:crypto';
import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import type { AuditEntry, AuditLog } from '../audit/index.js';
import type { Database } from '../db/index.js';
import { isUniqueViolation } from '../db/index.js';
import { AppError, type ErrorCode } from '../errors/index.js';
import { type CeremonyPurpose, type ChallengeStore, createChallengeStore } from './challenge.store.js';
import { createPasskeyStore, type PasskeyInfo, type PasskeyStore } from './passkey.store.js';
import type { RelyingParty } from './relying-party.js';

/** Where a request came from: for the session row and the audit log. */
export interface RequestMeta {
  ip: string;
  userAgent: string | null;
  channel: string;
}

export interface PasskeyServiceDeps {
  db: Database;
  rp: RelyingParty;
  audit: AuditLog;
  log: { warn(obj: object, msg: string): void };
  /** Ids in the design's form (`pk_...`, `vt_...`). */
  newId(model: 'passkey' | 'verification'): string;
  /** The same session a password sign-in makes. */
  createSession(userId: string, meta: RequestMeta): Promise<{ userId: string; sessionId: string }>;
  /**
   * auth.recent_auth_window. Adding a passkey adds a way in that outlives every session, and signing in with it makes
   * a fresh session, which passes every recent-authentication check: so it needs a sign-in this recent, as the other
   * sensitive changes do, not just any valid token (a stolen one could otherwise plant a passkey, sign in with it and
   * turn off 2FA). Anonymous users have no other credential to sign in again with and are not held to it.
   */
  freshSessionSeconds: number;
}

export interface SignedInUser {
  userId: string;
  /** The session the request came with; registration needs a recent one. */
  sessionId: string | null;
  email: string;
  name: string;
}

/**
 * Passkey ceremonies and management, on @simplewebauthn/server directly rather than through Better Auth's passkey
 * routes: the design's client fetches options without cookies (the plugin keeps the challenge behind a cookie), and
 * the plugin lacks what a security product needs here (single use under concurrency, purpose binding, a distinct
 * refusal for a counter that went backwards, the last-passkey guard, one error code per failure). Rows are written in the plugin's
 * format (its schema is configured); its own /api/auth/passkey/* routes are not served (src/auth/mount.plugin.ts).
 */
export function createPasskeyService(deps: PasskeyServiceDeps) {
  const { db, rp, audit, log } = deps;
  const passkeys = createPasskeyStore(db);
  const challenges: ChallengeStore = createChallengeStore(db, rp.challengeTtlSeconds);
  const timeout = rp.challengeTtlSeconds * 1000;

  /** Refuses with `code`, writing passkey.refused first (the reason is the code; never the credential). */
  async function refuse(
    code: ErrorCode,
    meta: RequestMeta,
    context: { userId?: string | null; ceremony: CeremonyPurpose; keyId?: string },
    cause?: unknown,
  ): Promise<never> {
    const entry: AuditEntry = {
      event: 'passkey.refused',
      userId: context.userId ?? null,
      channel: meta.channel,
      ip: meta.ip,
      userAgent: meta.userAgent,
      details: {
        reason: code,
        ceremony: context.ceremony,
        ...(context.keyId ? { keyId: context.keyId } : {}),
      },
    };
    await audit.record(entry);
    throw new AppError(code, undefined, {}, { cause });
  }

  /** Takes the challenge the browser signed; it can be used only once, only for `purpose`, only before it expires. */
  async function consumeChallenge(purpose: CeremonyPurpose, challenge: string, meta: RequestMeta) {
    const consumed = await challenges.consume(purpose, challenge);
    if (consumed.status === 'ok') return consumed.binding;
    return refuse(consumed.status === 'expired' ? 'PASSKEY_CHALLENGE_EXPIRED' : 'PASSKEY_CHALLENGE_INVALID', meta, {
      ceremony: purpose,
    });
  }

  /** The request's session, still live (else the token is no longer valid) and recent (freshSessionSeconds). */
  async function requireFreshSession(user: SignedInUser, store: PasskeyStore = passkeys): Promise<void> {
    const state = user.sessionId ? await store.sessionState(user.sessionId, deps.freshSessionSeconds) : 'stale';
    if (state === 'ended') throw new AppError('INVALID_TOKEN');
    if (state === 'stale') throw new AppError('PASSKEY_SESSION_NOT_FRESH');
  }

  return {
    relyingParty: rp,

    async registrationOptions(user: SignedInUser): Promise<PublicKeyCredentialCreationOptionsJSON> {
      await requireFreshSession(user);
      const existing = await passkeys.descriptorsOf(user.userId);
      const options = await generateRegistrationOptions({
        rpName: rp.rpName,
        rpID: rp.rpID,
        // A random user handle per registration, as Better Auth's plugin does: the handle reveals nothing about the
        // account, and sign-in finds the passkey by its credential id.
        userID: randomBytes(32),
        userName: user.email,
        userDisplayName: user.name || user.email,
        attestationType: 'none',
        timeout,
        excludeCredentials: existing.map((d) => ({ id: d.id, transports: asTransports(d.transports) })),
        // Discoverable (usernameless sign-in) and user-verified (the passkey alone is a full sign-in).
        authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      });
      await challenges.issue('registration', options.challenge, { userId: user.userId }, deps.newId('verification'));
      return options;
    },

    async register(user: SignedInUser, credential: unknown, name: string | null, meta: RequestMeta) {
      const ceremony = 'registration' as const;
      const parsed = parseCredential(credential, ceremony);
      if (!parsed) return refuse('PASSKEY_MALFORMED_CREDENTIAL', meta, { userId: user.userId, ceremony });
      await requireFreshSession(user);
      const binding = await consumeChallenge(ceremony, parsed.challenge, meta);
      // A challenge issued to another signed-in user is not this user's to complete.
      if (binding.userId !== user.userId) {
        return refuse('PASSKEY_CHALLENGE_INVALID', meta, { userId: user.userId, ceremony });
      }

      let verification: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
      try {
        verification = await verifyRegistrationResponse({
          response: parsed.response as unknown as RegistrationResponseJSON,
          expectedChallenge: parsed.challenge,
          expectedOrigin: rp.origins,
          expectedRPID: rp.rpID,
          requireUserVerification: true,
        });
      } catch (err) {
        return refuse(codeOfVerificationError(err), meta, { userId: user.userId, ceremony }, err);
      }
      const info = verification.registrationInfo;
      if (!verification.verified || !info) {
        return refuse('PASSKEY_VERIFICATION_FAILED', meta, { userId: user.userId, ceremony });
      }
      if (!isSignatureCounter(info.credential.counter)) {
        return refuse('PASSKEY_MALFORMED_CREDENTIAL', meta, { userId: user.userId, ceremony });
      }
      // @simplewebauthn/server 13 checks neither the attested id's length nor that it is the id the response names:
      // one past WebAuthn's limit would be stored (past ~2700 bytes it overflows the unique index: a 500), and one
      // other than the response's is not the passkey the browser will sign in with.
      const credentialId = Buffer.from(info.credential.id, 'base64url');
      if (
        credentialId.length > MAX_CREDENTIAL_ID_BYTES ||
        !credentialId.equals(Buffer.from(parsed.response.id, 'base64url'))
      ) {
        return refuse('PASSKEY_MALFORMED_CREDENTIAL', meta, { userId: user.userId, ceremony });
      }

      let stored: PasskeyInfo;
      try {
        stored = await db.transaction(async (tx) => {
          const store = createPasskeyStore(tx);
          // The session was checked before the ceremony; since then a reclaim by the address's owner (or a disable)
          // may have ended it. Wait for any such change holding the user row, then check again, in a new statement
          // that sees what it committed: a reclaim cannot miss the passkey, nor the passkey outlive the reclaim. A
          // deleted user's sessions went with it, and the lock keeps the user until the insert commits.
          await store.lockUserForPasskey(user.userId);
          await requireFreshSession(user, store);
          return store.insert({
            id: deps.newId('passkey'),
            userId: user.userId,
            name,
            credentialId: info.credential.id,
            publicKey: info.credential.publicKey,
            counter: info.credential.counter,
            deviceType: info.credentialDeviceType,
            backedUp: info.credentialBackedUp,
            transports: (parsed.response as unknown as RegistrationResponseJSON).response.transports ?? [],
            aaguid: info.aaguid,
          });
        });
      } catch (err) {
        if (isUniqueViolation(err))
          return refuse('PASSKEY_ALREADY_REGISTERED', meta, { userId: user.userId, ceremony });
        throw err;
      }
      await audit.record({
        event: 'passkey.added',
        userId: user.userId,
        channel: meta.channel,
        ip: meta.ip,
        userAgent: meta.userAgent,
        details: { keyId: stored.id, deviceType: stored.deviceType, backedUp: stored.backedUp },
      });
      return stored;
    },

    /**
     * Usernameless unless `email` is given: then only that account's passkeys are accepted. The options are the same
     * either way, for an account with passkeys, one without, or no account: no `allowCredentials` (every passkey here
     * is discoverable, registered with residentKey 'required', so the browser finds them without it). Listing the
     * account's credential ids would tell anyone which addresses have passkeys, and hand out those ids (WebAuthn
     * §14.6.2, username enumeration); the narrowing is enforced here, when the challenge is consumed.
     */
    async authenticationOptions(email?: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
      // An unknown address still narrows: to nobody ('' is no user's id), so no passkey can complete it.
      const binding = { userId: email === undefined ? null : ((await passkeys.userIdByEmail(email)) ?? '') };
      const options = await generateAuthenticationOptions({ rpID: rp.rpID, userVerification: 'required', timeout });
      await challenges.issue('authentication', options.challenge, binding, deps.newId('verification'));
      return options;
    },

    async authenticate(credential: unknown, meta: RequestMeta) {
      const ceremony = 'authentication' as const;
      const parsed = parseCredential(credential, ceremony);
      if (!parsed) return refuse('PASSKEY_MALFORMED_CREDENTIAL', meta, { ceremony });
      const binding = await consumeChallenge(ceremony, parsed.challenge, meta);

      const stored = await passkeys.findByCredentialId(parsed.response.id);
      if (!stored) return refuse('PASSKEY_UNKNOWN_CREDENTIAL', meta, { ceremony });
      const context = { userId: stored.userId, ceremony, keyId: stored.id };
      if (binding.userId !== null && binding.userId !== stored.userId) {
        // Options narrowed by email to another account: to that account this passkey is unknown.
        return refuse('PASSKEY_UNKNOWN_CREDENTIAL', meta, { ceremony });
      }

      let verification: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
      try {
        verification = await verifyAuthenticationResponse({
          response: parsed.response as unknown as AuthenticationResponseJSON,
          expectedChallenge: parsed.challenge,
          expectedOrigin: rp.origins,
          expectedRPID: rp.rpID,
          // Counter 0 switches the library's own counter check off: it runs before the signature check, so a forged
          // assertion would be reported as a clone. Ours below runs only on a valid signature.
          credential: { id: stored.credentialId, publicKey: stored.publicKey, counter: 0 },
          requireUserVerification: true,
        });
      } catch (err) {
        return refuse(codeOfVerificationError(err), meta, context, err);
      }
      if (!verification.verified) return refuse('PASSKEY_SIGNATURE_INVALID', meta, context);

      const { newCounter } = verification.authenticationInfo;
      if (!isSignatureCounter(newCounter)) return refuse('PASSKEY_MALFORMED_CREDENTIAL', meta, context);
      const regressed = (newCounter > 0 || stored.counter > 0) && newCounter <= stored.counter;
      if (regressed || !(await passkeys.advanceCounter(stored.id, newCounter))) {
        // Not a clone when the passkey is gone: removed since it was read (a reclaim of the account takes them all).
        if (!regressed && (await passkeys.findByCredentialId(stored.credentialId))?.id !== stored.id) {
          return refuse('PASSKEY_UNKNOWN_CREDENTIAL', meta, context);
        }
        // WebAuthn §6.1.1: a counter that does not grow means two copies of the private key may exist.
        log.warn(
          { keyId: stored.id, userId: stored.userId, storedCounter: stored.counter, receivedCounter: newCounter },
          'passkey signature counter did not increase: possible cloned authenticator; sign-in refused',
        );
        return refuse('PASSKEY_COUNTER_REGRESSION', meta, context);
      }

      // The sign-in guard's refusals (a disabled account, a refused address) are refusals of this sign-in: audited as
      // the checks above are, as the password and magic-link sign-ins audit theirs. It also refuses (ACCOUNT_DISABLED) a
      // session ended as soon as it was inserted; ended by a reclaim, which took this passkey with it, the refusal is
      // the one for a removed passkey.
      const session = await deps.createSession(stored.userId, meta).catch(async (err: unknown) => {
        if (err instanceof AppError && (err.code === 'ACCOUNT_DISABLED' || err.code === 'IP_NOT_ALLOWED')) {
          const removed =
            err.code === 'ACCOUNT_DISABLED' &&
            (await passkeys.findByCredentialId(stored.credentialId))?.id !== stored.id;
          return refuse(removed ? 'PASSKEY_UNKNOWN_CREDENTIAL' : err.code, meta, context, err);
        }
        throw err;
      });
      // The passkey was read, and the user checked, before the session was inserted: a reclaim by the address's owner
      // (it removes the passkeys and the sessions) or a disable committing meanwhile missed this session. Checked again
      // now that it exists, holding the user row FOR SHARE (a disable writes it, a reclaim locks it first) and the passkey
      // FOR KEY SHARE (a delete, not another sign-in's counter): a change in flight is waited for, then seen; one that
      // starts later deletes the session itself.
      const { rows: held } = await db.query<{ disabled: boolean }>(
        `WITH held AS (
           SELECT u.disabled_at IS NOT NULL AS disabled
             FROM users u JOIN passkeys p ON p.user_id = u.id AND p.id = $2
            WHERE u.id = $1
              FOR SHARE OF u FOR KEY SHARE OF p
         ), undone AS (
           DELETE FROM sessions WHERE id = $3 AND NOT EXISTS (SELECT 1 FROM held WHERE NOT disabled)
         )
         SELECT disabled FROM held`,
        [stored.userId, stored.id, session.sessionId],
      );
      if (held[0]?.disabled !== false) {
        // Removed meanwhile, it is unknown now, as it would have been a moment later.
        return refuse(held[0] ? 'ACCOUNT_DISABLED' : 'PASSKEY_UNKNOWN_CREDENTIAL', meta, context);
      }
      const event = { userId: stored.userId, sessionId: session.sessionId, channel: meta.channel, ip: meta.ip };
      await audit.record({
        ...event,
        event: 'passkey.used',
        userAgent: meta.userAgent,
        details: { keyId: stored.id },
      });
      await audit.record({
        ...event,
        event: 'login.success',
        userAgent: meta.userAgent,
        details: { method: 'passkey' },
      });
      return { userId: stored.userId, sessionId: session.sessionId, keyId: stored.id };
    },

    list: (userId: string) => passkeys.listForUser(userId),

    async rename(userId: string, id: string, name: string): Promise<PasskeyInfo> {
      const renamed = await passkeys.rename(userId, id, name);
      if (!renamed) throw new AppError('PASSKEY_NOT_FOUND');
      return renamed;
    },

    async remove(userId: string, id: string, meta: RequestMeta): Promise<void> {
      const outcome = await db.transaction(async (tx) => {
        const store = createPasskeyStore(tx);
        await store.lockUser(userId);
        const own = (await store.listForUser(userId)).some((p) => p.id === id);
        if (!own) return 'not_found' as const;
        if (await store.isLastSignInMethod(userId, id)) return 'last' as const;
        await store.delete(userId, id);
        return 'deleted' as const;
      });
      if (outcome === 'not_found') throw new AppError('PASSKEY_NOT_FOUND');
      if (outcome === 'last') {
        return refuse('PASSKEY_LAST_SIGN_IN_METHOD', meta, { userId, ceremony: 'registration', keyId: id });
      }
      await audit.record({
        event: 'passkey.removed',
        userId,
        channel: meta.channel,
        ip: meta.ip,
        userAgent: meta.userAgent,
        details: { keyId: id },
      });
    },
  };
}

export type PasskeyService = ReturnType<typeof createPasskeyService>;

const B64URL = /^[A-Za-z0-9_-]+={0,2}$/;
/** WebAuthn §6.5.1: credentialIdLength is at most 1023 bytes. */
const MAX_CREDENTIAL_ID_BYTES = 1023;
// Generous bounds (credential ids are at most 1023 bytes; attestation objects of real authenticators a few KiB).
const MAX_FIELD = 16384;

const isB64url = (v: unknown, max = MAX_FIELD): v is string =>
  typeof v === 'string' && v.length <= max && B64URL.test(v);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks the shape of what @simplewebauthn/browser returned and reads the challenge the authenticator signed from
 * clientDataJSON. Null for anything that is not such a response: the caller answers PASSKEY_MALFORMED_CREDENTIAL.
 */
function parseCredential(
  credential: unknown,
  ceremony: CeremonyPurpose,
): { response: { id: string } & Record<string, unknown>; challenge: string } | null {
  if (!isRecord(credential) || !isB64url(credential.id, 1400) || credential.type !== 'public-key') return null;
  if (credential.rawId !== undefined && credential.rawId !== credential.id) return null;
  const response = credential.response;
  if (!isRecord(response) || !isB64url(response.clientDataJSON, 8192)) return null;
  if (ceremony === 'registration') {
    if (!isB64url(response.attestationObject)) return null;
    if (response.transports !== undefined && !isStringArray(response.transports)) return null;
  } else {
    if (!isB64url(response.authenticatorData) || !isB64url(response.signature, 1024)) return null;
    if (response.userHandle !== undefined && response.userHandle !== null && !isB64url(response.userHandle, 1024)) {
      return null;
    }
  }
  let clientData: unknown;
  try {
    clientData = JSON.parse(Buffer.from(response.clientDataJSON, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (!isRecord(clientData) || !isB64url(clientData.challenge, 1024)) return null;
  return {
    response: {
      ...credential,
      id: credential.id,
      rawId: credential.id,
      clientExtensionResults: isRecord(credential.clientExtensionResults) ? credential.clientExtensionResults : {},
    },
    challenge: clientData.challenge,
  };
}

/**
 * The signature counter is 4 bytes of authenticator data (WebAuthn §6.1): anything outside 0..2^32 - 1 did not come
 * from a conforming authenticator. @simplewebauthn/server cannot report such a value today; checked all the same
 * because it is stored: 2^32 would make every later genuine counter look like a clone's, a fraction or NaN would
 * fail the query with a 500.
 */
const MAX_SIGNATURE_COUNTER = 0xffff_ffff;
const isSignatureCounter = (n: number) => Number.isInteger(n) && n >= 0 && n <= MAX_SIGNATURE_COUNTER;

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.length <= 16 && v.every((s) => typeof s === 'string' && s.length <= 32);

type Transport = NonNullable<
  Parameters<typeof generateAuthenticationOptions>[0]['allowCredentials']
>[number]['transports'];
const asTransports = (t: string[]) => (t.length > 0 ? (t as Transport) : undefined);

/**
 * @simplewebauthn/server reports failures as plain Errors; their messages are stable within a major version and are
 * the only way to tell them apart. Anything unrecognised is a generic verification failure (4xx, never a 500).
 */
function codeOfVerificationError(err: unknown): ErrorCode {
  const message = err instanceof Error ? err.message : '';
  if (/response origin/.test(message)) return 'PASSKEY_ORIGIN_MISMATCH';
  if (/RP ID hash/.test(message)) return 'PASSKEY_RPID_MISMATCH';
  if (
    /base64url|not a string|Missing credential|missing response|credential type|CBOR|decode|Unexpected end/i.test(
      message,
    )
  ) {
    return 'PASSKEY_MALFORMED_CREDENTIAL';
  }
  return 'PASSKEY_VERIFICATION_FAILED';
}
