import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type DataDirLock, lockDataDir } from '../../src/db/data-dir-lock.js';
import { type Database, openDatabase } from '../../src/db/index.js';
import { REPO_ROOT } from '../helpers/test-app.js';

// Regression: PGlite takes no lock, so a second instance on one data directory (the operator CLI beside a running
// gateway) printed success while its writes were lost. The first opener now holds <dir>.lock; later ones are refused.

const root = mkdtempSync(join(tmpdir(), 'gw-lock-'));
let n = 0;
/** A fresh directory standing for `<data_dir>/pgdata`. */
const freshDir = () => {
  const dir = join(root, `d${n++}`, 'pgdata');
  mkdirSync(dir, { recursive: true });
  return dir;
};

const children: ChildProcess[] = [];
const locks: DataDirLock[] = [];
const databases: Database[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const l of locks.splice(0)) l.release();
  for (const db of databases.splice(0)) await db.close().catch(() => {});
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const lock = async (dir: string) => {
  const l = await lockDataDir(dir);
  locks.push(l);
  return l;
};

/**
 * Another process that takes the lock on `dir` with the real module when told "go" on stdin (so several can be
 * released at once), prints "locked" or "refused <holder>", and holds it until killed.
 */
function holder(dir: string) {
  const script = `
    import { lockDataDir } from './src/db/data-dir-lock.ts';
    process.stdout.write('ready\\n');
    await new Promise((resolve) => process.stdin.once('data', resolve));
    try {
      await lockDataDir(process.argv[1]);
      process.stdout.write('locked\\n');
    } catch (err) {
      process.stdout.write('refused ' + err.holder + '\\n');
    }
    setInterval(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitFor = async (pattern: RegExp) => {
    for (let i = 0; i < 600 && !pattern.test(out); i++) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const match = pattern.exec(out);
    if (!match) throw new Error(`holder did not print ${pattern}:\n${out}`);
    return match;
  };
  return {
    child,
    exited,
    waitFor,
    go: () => child.stdin?.write('go\n'),
  };
}

/** The lock file exactly as a process killed while holding it leaves it (SIGKILL: no cleanup runs). */
async function lockOfKilledProcess(dir: string): Promise<{ pid: number; text: string }> {
  const h = holder(dir);
  await h.waitFor(/ready/);
  h.go();
  await h.waitFor(/locked/);
  h.child.kill('SIGKILL');
  await h.exited;
  return { pid: h.child.pid as number, text: readFileSync(`${dir}.lock`, 'utf8') };
}

const options = (dataDir: string) => ({
  url: '',
  dataDir,
  poolMax: 1,
  connectTimeoutSeconds: 5,
  statementTimeoutSeconds: 30,
});

describe('the embedded data directory lock', { timeout: 120_000 }, () => {
  // Through openDatabase, as the gateway, the CLI and npm run migrate open it (two PGlite starts: the slow part).
  it('refuses a second open while the first is open; opens after it closes, and after its holder was killed', async () => {
    const dataDir = join(root, `db${n++}`);
    const dir = join(dataDir, 'pgdata');
    const first = await openDatabase(options(dataDir));
    databases.push(first);
    await expect(openDatabase(options(dataDir))).rejects.toMatchObject({
      code: 'DATA_DIR_LOCKED',
      message: expect.stringMatching(
        new RegExp(`^the embedded database at ${dir} is in use by process ${process.pid}: `),
      ),
    });
    await first.close();
    expect(existsSync(`${dir}.lock`)).toBe(false); // released on close

    const stale = await lockOfKilledProcess(dir);
    expect(readFileSync(`${dir}.lock`, 'utf8')).toBe(stale.text); // left behind: nothing ran at the kill
    const second = await openDatabase(options(dataDir));
    databases.push(second);
    expect((await second.query<{ x: number }>('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
    expect(readFileSync(`${dir}.lock`, 'utf8')).toContain(`"pid":${process.pid}`);
    await expect(openDatabase(options(dataDir))).rejects.toThrow(`is in use by process ${process.pid}:`);
  });

  it('refuses while another live process holds it, naming its pid; once that process is killed, takes it over', async () => {
    const dir = freshDir();
    const h = holder(dir);
    await h.waitFor(/ready/);
    h.go();
    await h.waitFor(/locked/);
    await expect(lockDataDir(dir)).rejects.toThrow(`is in use by process ${h.child.pid}:`);

    h.child.kill('SIGKILL');
    await h.exited;
    expect(existsSync(`${dir}.lock`)).toBe(true);
    await lock(dir);
    await expect(lockDataDir(dir)).rejects.toThrow(`is in use by process ${process.pid}:`); // and now it is ours
  });

  it.skipIf(process.platform !== 'linux')(
    'a lock whose pid now belongs to another process (pid reuse) is stale',
    async () => {
      const dir = freshDir();
      const stale = await lockOfKilledProcess(dir);
      // Same namespace, a pid that is alive, but not the process that wrote the lock (its start time differs).
      writeFileSync(`${dir}.lock`, stale.text.replace(`"pid":${stale.pid}`, `"pid":${process.ppid}`));
      await lock(dir);
    },
  );

  it('a lock naming this process that this process does not hold is stale (a restarted container reuses pid 1)', async () => {
    const dir = freshDir();
    const stale = await lockOfKilledProcess(dir);
    writeFileSync(`${dir}.lock`, stale.text.replace(`"pid":${stale.pid}`, `"pid":${process.pid}`));
    await lock(dir);
  });

  // Regression: a foreign lock was refused at once, so a container restarted after a crash (its earlier run's lock names
  // pid 1 of a namespace that is gone) did not start, though the README says it waits up to a minute.
  it('a lock from another pid namespace or host is waited for: refused once refreshed, taken over once stale', async () => {
    const dir = freshDir();
    const stale = await lockOfKilledProcess(dir);
    const foreign = JSON.parse(stale.text) as Record<string, unknown>;
    writeFileSync(`${dir}.lock`, JSON.stringify({ ...foreign, pid: 1, ns: 'another-boot/pid:[1]', host: 'box2' }));
    const waits: string[] = [];
    const refused = lockDataDir(dir, (m) => waits.push(m));
    const outcome = refused.then(
      () => 'locked',
      (err: Error) => err.message,
    );
    await new Promise((r) => setTimeout(r, 300));
    const now = new Date();
    utimesSync(`${dir}.lock`, now, now); // its holder's heartbeat: alive
    expect(await outcome).toMatch(/ is in use by process 1 on box2: /);
    expect(waits).toEqual([expect.stringMatching(/locked by process 1 on box2 .*waiting up to (59|60) s /)]);

    const lastRefresh = new Date(Date.now() - 58_000);
    utimesSync(`${dir}.lock`, lastRefresh, lastRefresh);
    const started = Date.now();
    waits.length = 0;
    locks.push(await lockDataDir(dir, (m) => waits.push(m)));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_500); // waited until stale, not at once
    expect(waits).toEqual([expect.stringMatching(/waiting up to [23] s for its lock to go stale/)]);
    expect(readFileSync(`${dir}.lock`, 'utf8')).toContain(`"pid":${process.pid}`);

    const unrefreshed = new Date(Date.now() - 61_000);
    const other = freshDir();
    writeFileSync(`${other}.lock`, JSON.stringify({ ...foreign, pid: 1, ns: 'another-boot/pid:[1]', host: 'box2' }));
    utimesSync(`${other}.lock`, unrefreshed, unrefreshed);
    waits.length = 0;
    locks.push(await lockDataDir(other, (m) => waits.push(m))); // already stale: no wait
    expect(waits).toEqual([]);
  });

  it('an unreadable lock (a writer between open and write) holds while fresh and is stale when old', async () => {
    const dir = freshDir();
    writeFileSync(`${dir}.lock`, '');
    await expect(lockDataDir(dir)).rejects.toThrow('is in use by another process:');
    const old = new Date(Date.now() - 61_000);
    utimesSync(`${dir}.lock`, old, old);
    await lock(dir);
  });

  it('of several processes taking over one stale lock at the same moment, exactly one gets it', async () => {
    const dir = freshDir();
    await lockOfKilledProcess(dir);
    const racers = Array.from({ length: 5 }, () => holder(dir));
    await Promise.all(racers.map((r) => r.waitFor(/ready/)));
    for (const r of racers) r.go();
    const results = await Promise.all(racers.map(async (r) => (await r.waitFor(/locked|refused .*/))[0]));
    const winners = racers.filter((_, i) => results[i] === 'locked');
    expect(winners).toHaveLength(1);
    const winner = winners[0]?.child.pid;
    expect(results.filter((r) => r !== 'locked')).toEqual(Array(4).fill(`refused process ${winner}`));
    expect(readFileSync(`${dir}.lock`, 'utf8')).toContain(`"pid":${winner}`);
  });

  it('release removes its own lock only, and only once', async () => {
    const dir = freshDir();
    const first = await lockDataDir(dir);
    first.release();
    expect(existsSync(`${dir}.lock`)).toBe(false);
    const second = await lock(dir);
    first.release(); // again: must not remove the second holder's lock
    expect(existsSync(second.path)).toBe(true);
    await expect(lockDataDir(dir)).rejects.toThrow(`is in use by process ${process.pid}:`);
  });
});
