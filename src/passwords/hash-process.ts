import { type ChildProcess, fork } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import argon2 from 'argon2';

const CHILD = fileURLToPath(new URL('./hash-child.mjs', import.meta.url));

/** The `nice` program (coreutils on Linux, the base system on macOS), or null. */
function findNice(): string | null {
  for (const dir of ['/usr/bin', '/bin']) {
    const candidate = join(dir, 'nice');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return null;
}

/** Where argon2 runs: hash and verify, nothing else. */
export interface Argon2Runner {
  hash(password: string, options: { memoryCost: number; timeCost: number; parallelism: number }): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
  /** Ends the process (if any); later calls start a new one. */
  close(): void;
  /** The hashing process's pid, when one runs (tests read its priority). */
  readonly pid: number | null;
}

/** argon2 in this process (the libuv thread pool): hashes compete with request handling at equal priority. */
export const inProcessArgon2: Argon2Runner = {
  hash: (password, options) => argon2.hash(password, { ...options, type: argon2.argon2id }),
  verify: (hash, password) => argon2.verify(hash, password),
  close() {},
  pid: null,
};

interface Pending {
  resolve(value: string | boolean): void;
  reject(error: Error): void;
}

/**
 * The hashing process ended, stopped answering or could not be reached before it answered: there is no verdict on
 * the password, which is not the same as a wrong one (argon2's own errors, such as an unreadable hash, are plain
 * `Error`s). The hasher turns it into 503 SERVER_BUSY; the next call starts a new process.
 */
export class HashProcessUnavailable extends Error {
  override name = 'HashProcessUnavailable';
}

/** One started child and the calls it has not answered yet (a replacement never inherits its predecessor's calls). */
interface Running {
  process: ChildProcess;
  pending: Map<number, Pending>;
  /** Fails everything pending, lets the next call start a new child, and kills this one. */
  abandon(reason: string): void;
}

/**
 * How long one call may take in the child before the child is deemed stuck (stopped, swapping, deadlocked). A
 * production hash takes tens of milliseconds; at nice 10 under a saturated CPU the child still gets about a tenth of a
 * core, and a call may wait in its pool behind one other hash per thread (hasher concurrency is at most twice the
 * thread count), so even a hash configured at a second or two finishes in well under this. It is also past the point
 * where any client or proxy is still waiting for the sign-in, so nothing that could have succeeded is cut.
 */
const DEFAULT_DEADLINE_MS = 30_000;

/**
 * argon2 in a child process started at a lower CPU priority (`nice`). Hashing is meant to use every core the
 * requests leave idle, and no more: at equal priority two hashing threads on a two-core machine take two thirds of
 * the CPU from the event loop, and bearer checks slow to a third during a login flood. At nice 10 the scheduler
 * gives the event loop about nine tenths of a contended core and the hashes the rest, and all of it when requests
 * are idle. The child's libuv pool inherits the priority, since the whole process starts under `nice`.
 *
 * The child starts on first use, is restarted after a crash (what was in flight fails with HashProcessUnavailable;
 * the next call starts a new one), and does not keep the gateway alive while nothing is in flight. A call that has
 * not been answered within `deadlineMs` means the child is stuck: it is killed (SIGKILL, which also ends a stopped
 * process), so what it held fails as after a crash instead of holding the hasher's slots forever.
 */
export function createHashProcess(options: {
  nice: number;
  threads: number;
  deadlineMs?: number;
  /** The child ended or was killed as stuck while in use (not by close()): for the operator's log. */
  onLost?: (reason: string) => void;
}): Argon2Runner {
  const nice = findNice();
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  let current: Running | null = null;
  let nextId = 0;

  const start = (): Running => {
    // Under `nice` from the start, so every thread the child makes (its libuv pool) has the lower priority. Without
    // the program, the child's main thread is lowered just after it starts (threads made later inherit it).
    // Its environment is only its pool size: libuv reads UV_THREADPOOL_SIZE when the pool starts, which is before the
    // child's first line runs (the ES module loader reads files on the pool), so it cannot be set from inside. Nothing
    // of the gateway's environment (AUTH_SECRET, DATABASE_URL) is needed there, so none of it is passed on.
    const started = fork(CHILD, [], {
      execPath: nice ?? process.execPath,
      execArgv: nice ? ['-n', String(options.nice), process.execPath] : [],
      env: { UV_THREADPOOL_SIZE: String(options.threads) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    if (!nice && started.pid) {
      try {
        setPriority(started.pid, options.nice);
      } catch {}
    }
    const pending = new Map<number, Pending>();
    const gone = (reason: string) => {
      // close() lets go of the child first: only a child still in use is lost.
      const lost = current === running;
      if (lost) current = null;
      for (const waiting of pending.values()) waiting.reject(new HashProcessUnavailable(`hash process ${reason}`));
      pending.clear();
      if (lost) options.onLost?.(reason);
    };
    const running: Running = {
      process: started,
      pending,
      abandon(reason) {
        gone(reason);
        started.kill('SIGKILL');
      },
    };
    started.on('message', (message: { id: number; value?: string | boolean; error?: string }) => {
      const waiting = pending.get(message.id);
      if (!waiting) return;
      pending.delete(message.id);
      if (pending.size === 0) started.channel?.unref();
      if (message.error !== undefined) waiting.reject(new Error(message.error));
      else waiting.resolve(message.value as string | boolean);
    });
    started.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    started.on('error', (err) => gone(`failed: ${err.message}`));
    started.unref();
    started.channel?.unref();
    return running;
  };

  const call = <T extends string | boolean>(request: Record<string, unknown>): Promise<T> => {
    current ??= start();
    const running = current;
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const deadline = setTimeout(
        () => running.abandon(`did not answer within ${deadlineMs} ms (killed)`),
        deadlineMs,
      ).unref();
      running.pending.set(id, {
        resolve(value) {
          clearTimeout(deadline);
          resolve(value as T);
        },
        reject(error) {
          clearTimeout(deadline);
          reject(error);
        },
      });
      running.process.channel?.ref();
      // A failed send means the channel is closed or broken: nothing pending on it will be answered either.
      running.process.send({ id, ...request }, (err) => {
        if (err) running.abandon(`unreachable: ${err.message}`);
      });
    });
  };

  return {
    hash: (password, argonOptions) => call<string>({ op: 'hash', password, options: argonOptions }),
    verify: (hash, password) => call<boolean>({ op: 'verify', hash, password }),
    close() {
      // Disconnecting ends the child (it ignores stop signals meant for the gateway's process group).
      if (current?.process.connected) current.process.disconnect();
      current = null;
    },
    get pid() {
      return current?.process.pid ?? null;
    },
  };
}
