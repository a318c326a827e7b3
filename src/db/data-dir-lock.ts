import { randomBytes } from 'node:crypto';
import {
  closeSync,
  futimes,
  openSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * One process at a time on an embedded data directory. PGlite (0.4.6) takes no lock of its own: a second instance on
 * the same files (the operator CLI, `npm run migrate`, a second gateway) does not see the other's writes and writes
 * over them: a user created or sessions revoked beside a running gateway were lost. The first opener holds
 * `<dir>.lock`; later ones fail at once with DataDirLockedError, except when the holder is in another namespace (see
 * below): then they wait for the lock to go stale, as a container restarted after a crash must (its earlier run's lock
 * names a pid of a namespace that is gone, and nothing but the heartbeat tells that it is gone).
 *
 * Why a lock file and not a library: Node has no flock(); the OS-level locks on npm (fs-ext, os-lock) are native
 * add-ons that compile with node-gyp at install (a toolchain the slim Docker image lacks), and proper-lockfile
 * decides staleness by mtime only (a crashed holder blocks for its `stale` period, there is no pid to name, and a
 * stalled event loop makes it throw from a timer). Here the file holds who owns it, judged like this:
 *
 * - Same process namespace (Linux: same boot and pid namespace, elsewhere the same host): the holder is alive when
 *   its pid is, and on Linux only if that pid's start time is the one recorded, so a reused pid does not count. A
 *   lock naming our own pid is from an earlier process (a restarted container numbers from 1 again).
 * - Another namespace (another container, another host on a shared volume), where its pid means nothing to us: the
 *   holder refreshes the file's mtime every HEARTBEAT_MS; a lock not refreshed for STALE_MS is stale. Until then the
 *   opener waits, and refuses only when the lock is refreshed meanwhile (its holder is alive).
 *
 * A stale lock is removed under a short-lived `<dir>.lock.takeover` file, and only if it still holds what was judged
 * stale, so of two processes taking over the same stale lock exactly one ends up holding the directory.
 */

/** How often a holder refreshes its lock's mtime (read only from another namespace). */
const HEARTBEAT_MS = 10_000;
/** Six missed heartbeats: no live gateway stalls its event loop that long, and a crashed one is replaced in a minute. */
const STALE_MS = 60_000;
/** How often a waiting opener looks at a foreign lock again; well below HEARTBEAT_MS, so a refresh is seen. */
const POLL_MS = 1_000;
/** The takeover file lives for a few system calls; one this old was left by a process that died in between. */
const TAKEOVER_STALE_MS = 10_000;

export class DataDirLockedError extends Error {
  /** Stable: callers and operators' scripts may match on it. */
  readonly code = 'DATA_DIR_LOCKED';
  constructor(
    /** The data directory (what the gateway logs as "data in ..."). */
    readonly dir: string,
    /** Who holds it, for a message: "process 4711", "process 1 on 3f2a9c0d1e7b", "another process". */
    readonly holder: string,
  ) {
    super(
      `the embedded database at ${dir} is in use by ${holder}: one process at a time can open it; stop that one ` +
        'first, or use PostgreSQL (DATABASE_URL) to run several',
    );
    this.name = 'DataDirLockedError';
    // An expected condition with an exact message: where it is printed with its stack (src/server.ts: "fatal: ..."),
    // the operator reads this one line, not a trace of our code.
    this.stack = this.message;
  }
}

/** Emscripten's errno numbers (PGlite's file system throws `ErrnoError {errno}`, not an Error), for those we name. */
const EMSCRIPTEN_ERRNO: Record<number, string> = {
  2: 'EACCES',
  19: 'EDQUOT',
  20: 'EEXIST',
  29: 'EIO',
  44: 'ENOENT',
  51: 'ENOSPC',
  54: 'ENOTDIR',
  63: 'EPERM',
  69: 'EROFS',
};
const ERRNO_TEXT: Record<string, string> = {
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  ENOSPC: 'no space left on device',
};
/** Fixed by choosing another data_dir or its permissions: a configuration error. The rest (a full disk) is not. */
const SETTING_ERRNOS = new Set(['EACCES', 'EEXIST', 'ELOOP', 'ENAMETOOLONG', 'ENOENT', 'ENOTDIR', 'EPERM', 'EROFS']);

/** The data directory cannot be created or written. */
export class DataDirError extends Error {
  /** Stable: callers may match on it. */
  readonly code = 'DATA_DIR_UNUSABLE';
  /** True when data_dir is the thing to change (not a directory, not writable); false for a full disk and the like. */
  readonly setting: boolean;
  constructor(
    /** The path that failed. */
    readonly path: string,
    /** "ENOTDIR", "ENOSPC"; "errno 123" for a number we do not name. */
    readonly errno: string,
    options?: { cause?: unknown },
  ) {
    const text = ERRNO_TEXT[errno];
    super(`cannot create/write ${path} (${errno}${text ? `: ${text}` : ''})`, options);
    this.name = 'DataDirError';
    this.setting = SETTING_ERRNOS.has(errno);
    this.stack = this.message; // an expected condition: the operator reads this line, not a trace of our code
  }
}

/**
 * A DataDirError for what the file system threw at `path`: a Node error (its `code`) or PGlite's Emscripten
 * ErrnoError (its `errno` number); anything else (a corrupt database, a bug) is returned unchanged.
 */
export function dataDirError(path: string, err: unknown): unknown {
  if (!err || typeof err !== 'object') return err;
  const { code, errno } = err as { code?: unknown; errno?: unknown };
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new DataDirError(path, code, { cause: err });
  if (!(err instanceof Error) && typeof errno === 'number') {
    return new DataDirError(path, EMSCRIPTEN_ERRNO[errno] ?? `errno ${errno}`, { cause: err });
  }
  return err;
}

export interface DataDirLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock; idempotent, never throws. */
  release(): void;
}

interface Holder {
  pid: number;
  /** Process namespace: pids are comparable only within one. */
  ns: string;
  /** The holder's start time (Linux), to tell it from a later process with the same pid. */
  start: string | null;
  host: string;
  nonce: string;
}

/** Nonces of the locks this process holds: a second open in the same process is refused like any other. */
const heldNonces = new Set<string>();
const releasers = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Takes the lock on `dir` (which must exist) or throws DataDirLockedError naming the holder. A holder in another
 * namespace is waited for (up to STALE_MS after its last refresh); `onWait` gets one line saying so.
 */
export async function lockDataDir(
  dir: string,
  onWait: (message: string) => void = (message) => process.stderr.write(`${message}\n`),
): Promise<DataDirLock> {
  const path = `${dir}.lock`;
  const me: Holder = {
    pid: process.pid,
    ns: namespace(),
    start: startTime(process.pid),
    host: hostname(),
    nonce: randomBytes(12).toString('hex'),
  };
  const text = `${JSON.stringify(me)}\n`;
  // Each pass either takes the lock, refuses, or removes a stale lock; the bound only stops a pathological loop (a
  // file that keeps changing under us).
  for (let attempt = 0; attempt < 20; attempt++) {
    const fd = create(path, text);
    if (fd !== null) return hold(path, fd, text, me.nonce);
    const found = read(path);
    if (!found) continue; // released in between: try again
    if (!isStale(found)) {
      // An unreadable lock is one being written this instant (open and write are two calls): look again shortly.
      if (!found.holder && attempt < 5) {
        await sleep(20);
        continue;
      }
      if (found.holder && found.holder.ns !== namespace()) {
        if (await waitUntilStale(dir, path, found, found.holder, onWait)) continue; // stale or changed: judge again
      }
      throw new DataDirLockedError(dir, describe(found.holder));
    }
    takeOver(path, found.text);
    if (attempt > 0) await sleep(5 + Math.random() * 20); // contended: let the other taker finish
  }
  throw new Error(`could not take the lock ${path}: it keeps changing`);
}

function create(path: string, text: string): number | null {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if (errno(err) === 'EEXIST') return null;
    throw err;
  }
  try {
    writeSync(fd, text);
  } catch (err) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw err;
  }
  return fd;
}

function hold(path: string, fd: number, text: string, nonce: string): DataDirLock {
  heldNonces.add(nonce);
  const beat = setInterval(() => {
    const now = new Date();
    futimes(fd, now, now, () => {}); // a failed refresh only shortens how long another namespace waits
  }, HEARTBEAT_MS);
  beat.unref();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(beat);
    releasers.delete(release);
    heldNonces.delete(nonce);
    try {
      if (readFileSync(path, 'utf8') === text) unlinkSync(path); // only our own: never one taken over meanwhile
    } catch {}
    try {
      closeSync(fd);
    } catch {}
  };
  releasers.add(release);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // process.exit() without closing the database (a shutdown timeout): leave no lock behind when we can help it.
    process.on('exit', () => {
      for (const r of [...releasers]) r();
    });
  }
  return { path, release };
}

interface Found {
  text: string;
  holder: Holder | null;
  mtimeMs: number;
}

function read(path: string): Found | null {
  let text: string;
  let mtimeMs: number;
  try {
    mtimeMs = statSync(path).mtimeMs;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return null;
    throw err;
  }
  return { text, holder: parse(text), mtimeMs };
}

function parse(text: string): Holder | null {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (!Number.isSafeInteger(h.pid) || (h.pid as number) <= 0) return null;
    if (typeof h.ns !== 'string' || typeof h.nonce !== 'string') return null;
    return {
      pid: h.pid as number,
      ns: h.ns,
      start: typeof h.start === 'string' ? h.start : null,
      host: typeof h.host === 'string' ? h.host : '',
      nonce: h.nonce,
    };
  } catch {
    return null;
  }
}

function isStale({ holder, mtimeMs }: Found): boolean {
  const unrefreshed = Date.now() - mtimeMs > STALE_MS;
  if (!holder) return unrefreshed; // a writer that died between open and write
  if (heldNonces.has(holder.nonce)) return false; // this process
  if (holder.ns !== namespace()) return unrefreshed;
  if (holder.pid === process.pid) return true; // an earlier process with our pid: we do not hold it (checked above)
  if (!isAlive(holder.pid)) return true;
  // The pid now belongs to another process. Unreadable (/proc mounted with hidepid): alive, as far as we can tell.
  const start = holder.start === null ? null : startTime(holder.pid);
  return start !== null && start !== holder.start;
}

/**
 * Waits while a foreign lock stays as it was; true when it went stale or changed (judge it again), false when it was
 * refreshed: its holder is alive.
 */
async function waitUntilStale(
  dir: string,
  path: string,
  found: Found,
  holder: Holder,
  onWait: (message: string) => void,
): Promise<boolean> {
  const staleAt = () => found.mtimeMs + STALE_MS + 1;
  onWait(
    `the embedded database at ${dir} is locked by ${describe(holder)} in another process namespace (an earlier run ` +
      `of this container, or another container or host): waiting up to ${Math.ceil((staleAt() - Date.now()) / 1000)} s ` +
      `for its lock to go stale (${STALE_MS / 1000} s without a refresh), then taking it over`,
  );
  for (;;) {
    await sleep(Math.min(POLL_MS, Math.max(0, staleAt() - Date.now())));
    const now = read(path);
    if (!now || now.text !== found.text) return true; // released, or taken by another: judge again
    if (now.mtimeMs > found.mtimeMs) return false;
    if (isStale(now)) return true;
  }
}

function describe(holder: Holder | null): string {
  if (!holder) return 'another process';
  return holder.ns === namespace() ? `process ${holder.pid}` : `process ${holder.pid} on ${holder.host}`;
}

function takeOver(path: string, staleText: string): void {
  const mutex = `${path}.takeover`;
  let fd: number;
  try {
    fd = openSync(mutex, 'wx');
  } catch (err) {
    if (errno(err) !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(mutex).mtimeMs > TAKEOVER_STALE_MS) rmSync(mutex, { force: true });
    } catch {}
    return; // another process is taking over right now; the caller looks again
  }
  try {
    // Still the lock judged stale? Another taker may have replaced it with its own (live) one since we read it.
    if (read(path)?.text === staleText) unlinkSync(path);
  } finally {
    closeSync(fd);
    rmSync(mutex, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) === 'EPERM'; // exists, owned by another user
  }
}

let ownNamespace: string | undefined;
function namespace(): string {
  if (ownNamespace === undefined) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      ownNamespace = `${boot}/${readlinkSync('/proc/self/ns/pid')}`;
    } catch {
      ownNamespace = `host:${hostname()}`; // no /proc: pids are compared on the same host
    }
  }
  return ownNamespace;
}

/** Linux: the process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); elsewhere null. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command) is in parentheses and may contain spaces or ')': count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}
