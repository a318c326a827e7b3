export { type CeremonyPurpose, createChallengeStore } from './challenge.store.js';
export { createPasskeyStore, type PasskeyInfo, type PasskeyStore } from './passkey.store.js';
export {
  createPasskeyService,
  type PasskeyService,
  type PasskeyServiceDeps,
  type RequestMeta,
  type SignedInUser,
} from './passkeys.js';
export { type RelyingParty, relyingPartyOf } from './relying-party.js';
