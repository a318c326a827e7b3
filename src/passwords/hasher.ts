import { AsyncLocalStorage } from 'node:async_hooks';
import { availableParallelism } from 'node:os';
import { AppError } from '../errors/index.js';
import { type Argon2Runner, HashProcessUnavailable, inProcessArgon2 } from './hash-process.js';

export interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export interface PasswordHasher {
  /**
   * Rejects with VALIDATION_FAILED a password longer than `maxLength` UTF-16 units, which verify() would never accept
   * (the routes' schemas count code points, so up to twice as many units pass them as astral characters).
   */
  hash(password: string): Promise<string>;
  /**
   * False for a wrong password and for a hash this hasher cannot read; never throws for bad input. Rejects with
   * SERVER_BUSY when there is no verdict (a full queue; the hashing process crashed or was stuck): never a wrong password.
   */
  verify(hash: string, password: string): Promise<boolean>;
  readonly maxLength: number;
  /** Stops the hashing process, if there is one. */
  close(): void;
}

/**
 * argon2id with the configured cost. At most `concurrency` hashes run at once (default: the core count): more only
 * queue inside libuv's pool and starve every other request of CPU, so they wait here instead; beyond `maxQueue`
 * waiting, a hash is refused at once with 503 SERVER_BUSY rather than piling up (default: unbounded). The hashes run
 * in `runner`: the gateway's is a process of its own at a lower CPU priority (hash-process.ts); by default, this one.
 */
export function createPasswordHasher(
  params: Argon2Params,
  options: { maxLength: number; concurrency?: number; maxQueue?: number; runner?: Argon2Runner },
): PasswordHasher {
  const limit = createLimiter(options.concurrency ?? availableParallelism(), options.maxQueue);
  const argon2 = options.runner ?? inProcessArgon2;
  return {
    maxLength: options.maxLength,
    close: () => argon2.close(),
    async hash(password) {
      if (password.length > options.maxLength) {
        throw new AppError('VALIDATION_FAILED', 'Password too long', { field: 'password' });
      }
      return limit(() =>
        argon2.hash(password, params).catch((err: unknown) => {
          throw err instanceof HashProcessUnavailable ? refuseAsBusy(err) : err;
        }),
      );
    },
    async verify(hash, password) {
      // Over-long input never reaches argon2 (routes refuse it first; this guards every other caller).
      if (!hash.startsWith('$argon2') || password.length > options.maxLength) return false;
      // A full queue or a lost hashing process (SERVER_BUSY) propagates: it is no verdict on the password and must not
      // count as a wrong one. Only argon2's own refusal (a hash it cannot read) is `false`.
      return limit(() =>
        argon2.verify(hash, password).catch((err: unknown) => {
          if (err instanceof HashProcessUnavailable) throw refuseAsBusy(err);
          return false;
        }),
      );
    },
  };
}

/**
 * A counting semaphore: run at most `max` tasks at once, the rest in arrival order; with more than `maxQueue`
 * already waiting, a task is refused with SERVER_BUSY (Retry-After 1 s: about one queue's worth of hashes).
 */
export function createLimiter(max: number, maxQueue = Number.POSITIVE_INFINITY) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async function run<T>(task: () => Promise<T>): Promise<T> {
    if (active >= max) {
      if (waiting.length >= maxQueue) throw refuseAsBusy();
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

const serverBusy = (cause?: unknown) => new AppError('SERVER_BUSY', undefined, { retryAfter: 1 }, { cause });
const busySignal = new AsyncLocalStorage<{ busy: boolean }>();

/**
 * SERVER_BUSY for a hash refused (full queue) or left without an answer (the hashing process crashed or was killed as
 * stuck; Retry-After 1 s holds there too: the next call starts a new process at once), flagged for `surfaceBusy`: the
 * auth engine may catch it and answer with its own error.
 */
function refuseAsBusy(cause?: unknown): AppError {
  const signal = busySignal.getStore();
  if (signal) signal.busy = true;
  return serverBusy(cause);
}

/**
 * Runs `fn` (a call into the auth engine) and turns a hash refused for a full queue or a lost hashing process into
 * SERVER_BUSY, even when the engine caught the refusal and answered with its own error (Better Auth turns a throwing
 * hash function into a 500).
 */
export async function surfaceBusy<T>(fn: () => Promise<T>): Promise<T> {
  const state = { busy: false };
  let result: T;
  try {
    result = await busySignal.run(state, fn);
  } catch (err) {
    if (state.busy) throw serverBusy();
    throw err;
  }
  if (state.busy) throw serverBusy();
  return result;
}
