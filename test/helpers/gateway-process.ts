import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { type Gateway, startGateway } from '../../bench/lib.js';
import { REPO_ROOT, TEST_SECRET } from './test-app.js';

// biome-ignore lint/suspicious/noExplicitAny: YAML trees and JSON bodies in tests are read by shape, asserted after.
type Json = any;
type Tree = Record<string, Json>;

export type { Gateway } from '../../bench/lib.js';
export { freePort, startGateway, startProcess, TSX, waitHealthy } from '../../bench/lib.js';

/**
 * Real gateway processes (`tsx src/server.ts`) for scale-out and fault tests: the shipped config.yaml with cheap argon2
 * parameters (tests measure behaviour, benchmarks measure cost), configured through the environment like production.
 */
export function testConfigFile(dir: string, patch: (tree: Tree) => void = () => {}): string {
  const tree = parse(readFileSync(join(REPO_ROOT, 'config.yaml'), 'utf8')) as Tree;
  tree.auth.argon2 = { memory_cost: 1024, time_cost: 1, parallelism: 1 };
  tree.dev_user = { ...tree.dev_user, enabled: false };
  // Plain HTTP on loopback although NODE_ENV=production (no TLS proxy in tests), and no per-IP limits or lockouts:
  // every request comes from 127.0.0.1 and these tests measure other things.
  tree.server = { ...tree.server, https_only: false };
  tree.rate_limit = { ...tree.rate_limit, enabled: false };
  tree.lockout = { ...tree.lockout, max_failures: 1000 };
  patch(tree);
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(tree));
  writeFileSync(join(dir, 'secrets.yaml'), '{}\n');
  return file;
}

/** An empty PostgreSQL database (no schema: the gateways migrate it) on TEST_DATABASE_URL's server. */
export async function emptyDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `gw_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const again = new pg.Client({ connectionString: adminUrl });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

export interface GatewayCluster {
  gateways: Gateway[];
  dir: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * `count` gateway processes on one database, started at the same time (so their migrations race). `envEach` adds
 * environment variables to process `index` only (e.g. a different TELEGRAM_API_ROOT for each).
 */
export async function startGateways(
  count: number,
  databaseUrl: string,
  patch?: (tree: Tree) => void,
  options: {
    env?: Record<string, string>;
    envEach?: (index: number) => Record<string, string>;
  } = {},
): Promise<GatewayCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-procs-'));
  const env = {
    DATABASE_URL: databaseUrl,
    AUTH_SECRET: TEST_SECRET,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    CONFIG_FILE: testConfigFile(dir, patch),
    SECRETS_FILE: join(dir, 'secrets.yaml'),
    DATA_DIR: dir,
    ...options.env,
  };
  const started = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => startGateway({ ...env, ...options.envEach?.(i) })),
  );
  const gateways = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  return { gateways, dir, env, stop };
}

export async function api(
  base: string,
  method: string,
  path: string,
  /** ip: sent as X-Forwarded-For, the client address when the gateway trusts the loopback proxy (server.trust_proxy). */
  options: { token?: string; body?: unknown; ip?: string } = {},
): Promise<{ status: number; body: Json; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.ip) headers['x-forwarded-for'] = options.ip;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, body, headers: res.headers };
}
