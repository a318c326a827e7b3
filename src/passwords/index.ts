export {
  type Argon2Params,
  createLimiter,
  createPasswordHasher,
  type PasswordHasher,
  surfaceBusy,
} from './hasher.js';
