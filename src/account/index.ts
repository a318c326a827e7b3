export { type AccountStore, createAccountStore } from './account.store.js';
export { createAccountHooks } from './account-hooks.js';
export { sendDeferred } from './deferred.js';
export { createEmailVerification, type EmailVerification } from './email-verification.js';
export { createRecentAuth, type RecentAuth } from './recent-auth.js';
export { createSecurityNotices } from './security-notices.js';
export { createSendLimit, type SendLimit } from './send-slots.js';
