import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { freePort } from '../bench/lib.js';
import { REPO_ROOT } from './helpers/test-app.js';

// The process as `npm start` runs it: config, embedded database, logs, restart, shutdown.

interface Running {
  child: ChildProcess;
  out: () => string;
  base: string;
  exited: Promise<number | null>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

async function start(env: Record<string, string>, waitHealthy = true): Promise<Running> {
  const port = await freePort();
  const secrets = join(mkdtempSync(join(tmpdir(), 'gw-proc-')), 'secrets.yaml');
  writeFileSync(secrets, '{}\n');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      PORT: String(port),
      HOST: '127.0.0.1',
      SECRETS_FILE: secrets,
      LOG_LEVEL: 'info',
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
  const base = `http://127.0.0.1:${port}`;
  if (waitHealthy) {
    const deadline = Date.now() + 90_000; // a fresh embedded database initialises in seconds, more on a loaded machine
    for (;;) {
      if (child.exitCode !== null) throw new Error(`gateway exited early:\n${output}`);
      const ok = await fetch(`${base}/auth/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`gateway not healthy in 90 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { child, out: () => output, base, exited };
}

/** How long a log line may trail the event it belongs to (the pipe is read when the loop gets to it). */
const PIPE_WAIT = { timeout: 10_000, interval: 25 };

const json = (body: unknown) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

describe('the gateway process on the embedded database', { timeout: 180_000 }, () => {
  it('logs where the data lives, prints the dev password once, keeps data across a restart, exits 0 on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gw-data-'));
    const first = await start({ DATA_DIR: dataDir });
    // The log lines come over the child's stdout pipe, the health answer over TCP: under load the answer can be read
    // first (seen in a full parallel run), so wait for the lines rather than expect them already there.
    await vi.waitFor(() => {
      expect(first.out()).toContain(`embedded PostgreSQL (PGlite): data in ${join(dataDir, 'pgdata')}`);
      expect(first.out()).toContain('development secret in use');
      expect(first.out()).toMatch(/Development user: dev@example\.com {2}password: \S+/);
    }, PIPE_WAIT);
    const printed = /Development user: dev@example\.com {2}password: (\S+)/.exec(first.out());
    expect(printed).not.toBeNull();

    const reg = await fetch(
      `${first.base}/auth/register`,
      json({ email: 'keep@example.com', password: 'SecurePassword123!', name: 'K' }),
    );
    expect(reg.status).toBe(201);
    const { token } = (await reg.json()) as { token: string };
    const dev = await fetch(`${first.base}/auth/login`, json({ email: 'dev@example.com', password: printed?.[1] }));
    expect(dev.status).toBe(200);
    expect(((await dev.json()) as { userId: string }).userId).toBe('dev-user-001');

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    await vi.waitFor(() => expect(first.out()).toContain('shutting down'), PIPE_WAIT); // 'exit' can precede the pipe's end

    const second = await start({ DATA_DIR: dataDir });
    // 'Server listening' is logged after the development user would have been printed: wait for it, then look.
    await vi.waitFor(() => expect(second.out()).toContain('Server listening at'), PIPE_WAIT);
    expect(second.out()).not.toContain('Development user:'); // printed once, at creation
    const session = await fetch(`${second.base}/auth/session`, { headers: { authorization: `Bearer ${token}` } });
    expect(session.status).toBe(200); // same secret (kept under DATA_DIR), same session row
    const login = await fetch(
      `${second.base}/auth/login`,
      json({ email: 'keep@example.com', password: 'SecurePassword123!' }),
    );
    expect(login.status).toBe(200);
    const me = (await (
      await fetch(`${second.base}/auth/session`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      license: { type: string };
    };
    expect(me.license.type).toBe('free');
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('refuses to start in production with the example secret, with one line naming the key', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gw-data-'));
    const run = await start(
      { DATA_DIR: dataDir, NODE_ENV: 'production', AUTH_SECRET: 'YOUR-SUPER-SECRET-KEY-HERE' },
      false,
    );
    expect(await run.exited).toBe(78);
    expect(run.out().trim()).toMatch(/^config error: auth\.secret: the example secret is not allowed in production/);
    expect(run.out().trim().split('\n')).toHaveLength(1);
  });

  it('refuses to start with an unknown config key, naming it and the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-cfg-'));
    writeFileSync(join(dir, 'config.yaml'), 'server:\n  portt: 1\n');
    const run = await start({ DATA_DIR: dir, CONFIG_FILE: join(dir, 'config.yaml') }, false);
    expect(await run.exited).toBe(78);
    expect(run.out()).toContain(`config error: server.portt: unknown key (${join(dir, 'config.yaml')})`);
  });
});

describe.skipIf(!process.env.TEST_DATABASE_URL)('the gateway process on PostgreSQL', { timeout: 120_000 }, () => {
  it('uses DATABASE_URL, says so without the password, and answers the design examples', async () => {
    const url = new URL(process.env.TEST_DATABASE_URL as string);
    const dataDir = mkdtempSync(join(tmpdir(), 'gw-data-'));
    const run = await start({ DATA_DIR: dataDir, DATABASE_URL: url.toString(), AUTH_SECRET: 'p'.repeat(40) });
    await vi.waitFor(() => expect(run.out()).toContain('PostgreSQL server at'), PIPE_WAIT);
    const email = `proc-${Date.now()}@example.com`;
    const reg = await fetch(`${run.base}/auth/register`, json({ email, password: 'SecurePassword123!', name: 'P' }));
    expect(reg.status).toBe(201);
    const body = (await reg.json()) as { userId: string; token: string };
    expect(body.userId).toMatch(/^user_\d+_/);
    const s = await fetch(`${run.base}/auth/session`, { headers: { authorization: `Bearer ${body.token}` } });
    expect(s.status).toBe(200);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  });
});
