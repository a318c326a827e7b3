export { type Argon2Runner, createHashProcess, HashProcessUnavailable, inProcessArgon2 } from './hash-process.js';
export {
  type Argon2Params,
  createLimiter,
  createPasswordHasher,
  type PasswordHasher,
  surfaceBusy,
} from './hasher.js';
