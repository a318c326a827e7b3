export { proveAddress, type Reclaimed } from './address-proof.js';
export { type AnonymousUsers, createAnonymousUsers } from './anonymous-users.js';
export { CODE_CHALLENGE_PATTERN, CODE_VERIFIER_PATTERN, verifierAnswers } from './code-challenge.js';
export { createExchangeCodes, type ExchangeCodes } from './exchange-codes.js';
export { createMagicLinks, MAGIC_LINK_VERIFY_PATH, type MagicLinks } from './magic-links.js';
export { hashSecret, newSecret, SECRET_PATTERN } from './secrets.js';
