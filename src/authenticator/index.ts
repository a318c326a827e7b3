export { type Authenticator, type AuthenticatorDeps, bearerToken, createAuthenticator } from './authenticator.js';
export { createSessionStore, type SessionStore } from './session.store.js';
export { createTokenCodec, type TokenClaims, type TokenCodec } from './tokens.js';
export type { AuthContext, Channel } from './types.js';
