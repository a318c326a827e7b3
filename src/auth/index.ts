export { CLIENT_IP_HEADER } from './better-auth.js';
export { type AuthEngine, createAuthEngine, type NewSession } from './engine.js';
export { generateId } from './ids.js';
export { betterAuthMount, type MountOptions } from './mount.plugin.js';
export { type BetterAuthOpenApi, betterAuthOpenApi } from './openapi.js';
