import { availableParallelism } from 'node:os';
import argon2 from 'argon2';

export interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** False for a wrong password and for a hash this hasher cannot read; never throws for bad input. */
  verify(hash: string, password: string): Promise<boolean>;
  readonly maxLength: number;
}

/**
 * argon2id with the configured cost. At most `concurrency` hashes run at once (default: the core count): more only
 * queue inside libuv's pool and starve every other request of CPU, so they wait here instead.
 */
export function createPasswordHasher(
  params: Argon2Params,
  options: { maxLength: number; concurrency?: number },
): PasswordHasher {
  const limit = createLimiter(options.concurrency ?? availableParallelism());
  const argonOptions = { type: argon2.argon2id, ...params } as const;
  return {
    maxLength: options.maxLength,
    hash: (password) => limit(() => argon2.hash(password, argonOptions)),
    async verify(hash, password) {
      // Over-long input never reaches argon2 (routes refuse it first; this guards every other caller).
      if (!hash.startsWith('$argon2') || password.length > options.maxLength) return false;
      try {
        return await limit(() => argon2.verify(hash, password));
      } catch {
        return false;
      }
    },
  };
}

/** A counting semaphore: run at most `max` tasks at once, the rest in arrival order. */
export function createLimiter(max: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async function run<T>(task: () => Promise<T>): Promise<T> {
    if (active >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}
