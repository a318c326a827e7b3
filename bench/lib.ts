import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Shared pieces of the benchmark: child processes, ports, load runs, memory, tokens. */

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The checkout whose gateway runs (BENCH_GATEWAY_DIR: measure another build with this harness). */
export const GATEWAY_DIR = process.env.BENCH_GATEWAY_DIR || ROOT;
export const TSX = `${ROOT}node_modules/.bin/tsx`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  /** stdout+stderr so far (for error messages). */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resident memory of the process and its descendants (tsx runs node as a child), in bytes. */
  rss(): number;
}

/** Spawns a command in its own process group (so stop() ends tsx and the node it runs). */
export function startProcess(command: string, args: string[], env: Record<string, string>, cwd: string = ROOT): Proc {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      try {
        process.kill(-(child.pid as number), signal);
      } catch {}
      const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {}
        return null;
      }
      return code;
    },
    rss: () => treeRss(child.pid as number),
  };
}

function treeRss(pid: number): number {
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop() as number;
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const kb = /VmRSS:\s+(\d+)/.exec(status)?.[1];
      total += Number(kb ?? 0) * 1024;
      for (const task of readdirSync(`/proc/${p}/task`)) {
        const file = `/proc/${p}/task/${task}/children`;
        if (!existsSync(file)) continue;
        for (const c of readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean)) stack.push(Number(c));
      }
    } catch {}
  }
  return total;
}

export async function waitHealthy(url: string, proc: Proc, timeoutMs = 60_000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if (proc.child.exitCode !== null) throw new Error(`process exited (${proc.child.exitCode}):\n${proc.output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return performance.now() - started;
    } catch {}
    await sleep(25);
  }
  throw new Error(`not healthy within ${timeoutMs} ms: ${url}\n${proc.output()}`);
}

export interface Gateway extends Proc {
  port: number;
  url: string;
}

/**
 * The arguments `npm start` gives node (package.json's start script, `node <flags> --import tsx src/server.ts`) in the
 * checkout `dir`: benchmarks and tests run the gateway as production starts it, V8 flags included, in one process.
 */
export function startArguments(dir: string = GATEWAY_DIR): string[] {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const [program, ...args] = pkg.scripts.start.trim().split(/\s+/);
  if (program !== 'node') throw new Error(`package.json's start script does not run node: ${pkg.scripts.start}`);
  return args;
}

/** One gateway process, started as `npm start` starts it, configured through the environment only. */
export async function startGateway(env: Record<string, string>): Promise<Gateway> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // BASE_URL explicitly: a test runner (vite) exports BASE_URL=/ into the environment children inherit.
  const proc = startProcess(
    process.execPath,
    startArguments(),
    {
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      BASE_URL: url,
      ...env,
      PORT: String(port),
    },
    GATEWAY_DIR,
  );
  await waitHealthy(`${url}/auth/health`, proc);
  return { ...proc, port, url };
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  statusCodes: Record<string, number>;
}

/** One autocannon run in its own process (bench/load.ts), so the load generator never shares the gateway's CPU loop. */
export async function load(options: {
  url: string;
  connections: number;
  seconds: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}): Promise<LoadResult> {
  const proc = startProcess(TSX, ['bench/load.ts', JSON.stringify(options)], {});
  const code = await new Promise<number | null>((resolve) => proc.child.once('exit', resolve));
  const out = proc.output();
  const line = out
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (code !== 0 || !line) throw new Error(`load generator failed (${code}):\n${out}`);
  return JSON.parse(line) as LoadResult;
}

/** An HS256 token the gateway accepts (the same claims as src/authenticator/tokens.ts), signed with its secret. */
export function signToken(secret: string, sub: string, sid: string, expiresAt: Date): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, sid, iat: Math.floor(Date.now() / 1000), exp: Math.floor(expiresAt.getTime() / 1000) })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
