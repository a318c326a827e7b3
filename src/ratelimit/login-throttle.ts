import { AppError } from '../errors/index.js';
import type { CounterStore, LockoutPolicy } from './store.js';

/** One password attempt holding a slot: exactly one of these ends it (later calls do nothing). */
export interface LoginAttempt {
  /** The password was right: the account's failures and lockout history are cleared. */
  succeeded(): Promise<void>;
  /** The password was wrong: counted; the attempt that reaches the maximum locks the account. */
  failed(): Promise<void>;
  /** No verdict (an error before or during verification): the slot is given back. */
  released(): Promise<void>;
}

export interface LoginThrottle {
  /**
   * Takes a slot for a password attempt on `email` (any spelling: trimmed and lower-cased here) BEFORE the password is
   * verified. Throws 429 ACCOUNT_LOCKED with retryAfter when the account is locked or all slots are in use.
   */
  reserve(email: string): Promise<LoginAttempt>;
  readonly policy: LockoutPolicy;
}

export interface LoginThrottleDeps {
  store: CounterStore;
  policy: LockoutPolicy;
  /** The account was just locked (once per lockout, whichever process locked it). */
  onLockout?(account: string, lockedMs: number): void | Promise<void>;
}

export const accountKey = (email: string) => email.trim().toLowerCase();

/**
 * A password check outside sign-in (2FA enrolment, a password change), counted against the account's sign-in lockout
 * as /auth/login counts it (the same key: the email): a slot is taken before the password is looked at (429
 * ACCOUNT_LOCKED when locked or all slots are in use), a wrong password (`check` throws INVALID_PASSWORD) is a failure,
 * a right one clears the count, anything else gives the slot back. Without it, a session could guess its account's
 * password at the routes' rate, never locked out.
 */
export async function countedPasswordCheck<T>(
  throttle: LoginThrottle,
  email: string,
  check: () => Promise<T>,
): Promise<T> {
  const attempt = await throttle.reserve(email);
  let result: T;
  try {
    result = await check();
  } catch (err) {
    if (err instanceof AppError && err.code === 'INVALID_PASSWORD') await attempt.failed();
    else await attempt.released();
    throw err;
  }
  await attempt.succeeded();
  return result;
}

/**
 * Per-account failed-login throttle. Keyed by the normalized email whether or not an account exists, so a lockout
 * answers the same for unknown emails and reveals nothing.
 */
export function createLoginThrottle({ store, policy, onLockout }: LoginThrottleDeps): LoginThrottle {
  return {
    policy,
    async reserve(email) {
      const account = accountKey(email);
      const r = await store.reserve(account, policy);
      if (r.kind === 'locked') {
        throw new AppError('ACCOUNT_LOCKED', undefined, { retryAfter: Math.max(1, Math.ceil(r.retryMs / 1000)) });
      }
      const { slot } = r;
      let done = false;
      const once = (fn: () => Promise<void>) => async () => {
        if (done) return;
        done = true;
        await fn();
      };
      return {
        succeeded: once(() => slot.succeed()),
        failed: once(async () => {
          const lockedMs = await slot.fail();
          if (lockedMs !== null) await onLockout?.(account, lockedMs);
        }),
        released: once(() => slot.release()),
      };
    },
  };
}
