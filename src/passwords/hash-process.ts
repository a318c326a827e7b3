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
  /** (Re)arms the stuck-child watchdog while calls are pending, disarms it when none are. */
  watch(): void;
  /** Fails everything pending, lets the next call start a new child, and kills this one. */
  abandon(reason: string): void;
}

/**
 * How long a child with calls pending may go without answering any of them before it is deemed stuck (stopped,
 * swapping, deadlocked). Silence, not a call's age: under a login flood (auth.argon2.max_concurrent up to 256) calls
 * queue in the child's pool for far longer than one hash while it answers steadily, and a healthy child must never be
 * killed for that. A production hash takes tens of milliseconds, and at nice 10 on a saturated CPU the child still
 * gets about a tenth of a core, so even a hash configured at a second or two answers well within this.
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
 * the next call starts a new one), and does not keep the gateway alive while nothing is in flight. A child with calls
 * pending that answers none of them for `deadlineMs` is stuck: it is killed (SIGKILL, which also ends a stopped
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
    // The watchdog runs while calls are pending, and starts over at each answer.
    let watchdog: NodeJS.Timeout | undefined;
    const watch = () => {
      clearTimeout(watchdog);
      watchdog =
        pending.size > 0
          ? setTimeout(() => running.abandon(`answered nothing for ${deadlineMs} ms (killed)`), deadlineMs).unref()
          : undefined;
    };
    const gone = (reason: string) => {
      clearTimeout(watchdog);
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
      watch,
      abandon(reason) {
        gone(reason);
        started.kill('SIGKILL');
      },
    };
    started.on('message', (message: { id: number; value?: string | boolean; error?: string }) => {
      const waiting = pending.get(message.id);
      if (!waiting) return;
      pending.delete(message.id);
      watch();
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
      running.pending.set(id, { resolve: resolve as Pending['resolve'], reject });
      // The first pending call starts the watchdog; later ones leave it to the answers.
      if (running.pending.size === 1) running.watch();
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
