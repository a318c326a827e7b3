import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../bench/lib.js';
import { REPO_ROOT } from './helpers/test-app.js';

// The process as `npm start` runs it, starting on an embedded data directory it must wait for or cannot use.

interface Run {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  healthy: boolean;
}

const children: ChildProcess[] = [];
const mounts: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const m of mounts.splice(0)) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {}
  }
});

/** Starts the gateway; returns once it is healthy or has exited. */
async function start(env: Record<string, string>): Promise<Run> {
  const port = await freePort();
  const secrets = join(mkdtempSync(join(tmpdir(), 'gw-dd-')), 'secrets.yaml');
  writeFileSync(secrets, '{}\n');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      PORT: String(port),
      HOST: '127.0.0.1',
      BASE_URL: `http://127.0.0.1:${port}`,
      SECRETS_FILE: secrets,
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 100_000;
  let healthy = false;
  while (!healthy && Date.now() < deadline && child.exitCode === null) {
    healthy = await fetch(`http://127.0.0.1:${port}/auth/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (!healthy) await new Promise((r) => setTimeout(r, 250));
  }
  return { child, out: () => output, exited, healthy };
}

describe('the gateway process on an embedded data directory', { timeout: 180_000 }, () => {
  // Regression: the lock an OOM-killed container leaves (pid 1, its host name, its old pid namespace) was refused at
  // once, naming a process that is gone; README: a restarted container "waits up to that minute before it starts".
  it.skipIf(process.platform !== 'linux')(
    'a container restarted after a crash waits for the stale lock of its previous run, then starts',
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'gw-dd-data-'));
      mkdirSync(join(dataDir, 'pgdata'), { recursive: true });
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const lock = join(dataDir, 'pgdata.lock');
      const previousRun = { pid: 1, ns: `${boot}/pid:[4026500001]`, start: '12345', host: hostname(), nonce: 'c0ffee' };
      writeFileSync(lock, `${JSON.stringify(previousRun)}\n`);
      const lastRefresh = new Date(Date.now() - 45_000); // a margin for a slow start before the lock is looked at
      utimesSync(lock, lastRefresh, lastRefresh);

      const run = await start({ DATA_DIR: dataDir });
      expect(run.healthy).toBe(true);
      expect(run.out()).toMatch(/locked by process 1 on .* waiting up to \d+ s for its lock to go stale/);
      expect(run.out()).not.toContain('is in use by process 1');
    },
  );

  // Regression: PGlite throws Emscripten's ErrnoError (not an Error) on a full volume: "fatal: [object Object]".
  it.skipIf(process.getuid?.() !== 0)(
    'a full data volume at the first start is reported with the path and ENOSPC, exit 1',
    async () => {
      const mnt = mkdtempSync(join(tmpdir(), 'gw-dd-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=30m', 'tmpfs', mnt]); // a fresh database needs ~39 MB
      mounts.push(mnt);
      const run = await start({ DATA_DIR: join(mnt, 'data') });
      expect(run.healthy).toBe(false);
      expect(await run.exited).toBe(1);
      expect(run.out()).not.toContain('[object Object]');
      expect(run.out()).toContain(
        `fatal: cannot create/write ${join(mnt, 'data', 'pgdata')} (ENOSPC: no space left on device)`,
      );
    },
  );

  // Regression: in production (the secret set, so config loading does not touch data_dir) a DATA_DIR below a regular
  // file died with a stack trace from mkdir, naming neither data_dir nor DATA_DIR.
  it('a DATA_DIR that cannot be used stops the start with one config error line, exit 78', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gw-dd-file-')), 'a-file');
    writeFileSync(file, 'x');
    const run = await start({ DATA_DIR: join(file, 'data'), NODE_ENV: 'production', AUTH_SECRET: 'p'.repeat(40) });
    expect(run.healthy).toBe(false);
    expect(await run.exited).toBe(78);
    expect(run.out().trim().split('\n')).toEqual([
      `config error: data_dir: cannot create/write ${join(file, 'data', 'pgdata')} (ENOTDIR) (data_dir in the config file, or environment variable DATA_DIR)`,
    ]);
  });
});
