export type { AccountHooks } from './better-auth.js';
export { CLIENT_IP_HEADER, clientIpOf } from './better-auth.js';
export {
  type AuthEngine,
  createAuthEngine,
  type NewSession,
  type PendingVerification,
  type TwoFactorPending,
} from './engine.js';
export { generateId } from './ids.js';
export { betterAuthMount, type MountedSession, type MountOptions } from './mount.plugin.js';
export { type BetterAuthOpenApi, betterAuthOpenApi } from './openapi.js';
export type { LinkedAccount, ProviderRedirect, SignInMethods } from './sign-in-methods.engine.js';
export {
  ANONYMOUS_EMAIL_DOMAIN,
  configuredProviders,
  OAUTH_COMPLETE_PATH,
  OAUTH_LINKED_PATH,
} from './sign-in-methods.js';
export type { CodeCheck, TwoFactorEngine } from './two-factor.js';
