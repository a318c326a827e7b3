export {
  type Authenticator,
  type AuthenticatorDeps,
  bearerToken,
  createAuthenticator,
  hasSessionCookie,
  type Maybe,
} from './authenticator.js';
export { createSessionStore, type SessionStore } from './session.store.js';
export { createSessionEvents, SESSION_ENDED_CHANNEL, type SessionEnded, type SessionEvents } from './session-events.js';
export { createTokenCodec, type TokenClaims, type TokenCodec } from './tokens.js';
export type { AuthContext, Channel } from './types.js';
