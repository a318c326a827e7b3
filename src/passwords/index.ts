export { type Argon2Params, createLimiter, createPasswordHasher, type PasswordHasher } from './hasher.js';
