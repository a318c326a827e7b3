import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buildApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config/index.js';
import { type Database, migrate, openDatabase } from '../../src/db/index.js';
import { loggerOptions } from '../../src/http/logging.js';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;
export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long!!';

export interface TestDatabase {
  db: Database;
  /** The connection URL of this test's own database (PostgreSQL only). */
  url: string | null;
  dataDir: string;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database for one test file: its own PostgreSQL database when TEST_DATABASE_URL is set (CI), else
 * an embedded PGlite in a temporary directory. `drop()` closes and deletes it.
 */
export async function createTestDatabase(options: { kind?: 'postgres' | 'pglite' } = {}): Promise<TestDatabase> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  const dataDir = mkdtempSync(join(tmpdir(), 'gw-test-'));
  const dbOptions = { dataDir, poolMax: 5, connectTimeoutSeconds: 5, statementTimeoutSeconds: 30 };
  const kind = options.kind ?? (adminUrl ? 'postgres' : 'pglite');
  if (kind === 'pglite' || !adminUrl) {
    const db = await openDatabase({ ...dbOptions, url: '' });
    await migrate(db);
    return {
      db,
      url: null,
      dataDir,
      async drop() {
        await db.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const name = `gw_test_${randomBytes(6).toString('hex')}`;
  const admin = await openDatabase({ ...dbOptions, url: adminUrl, poolMax: 1 });
  await admin.exec(`CREATE DATABASE ${name}`);
  await admin.close();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = await openDatabase({ ...dbOptions, url: url.toString() });
  await migrate(db);
  return {
    db,
    url: url.toString(),
    dataDir,
    async drop() {
      await db.close();
      const again = await openDatabase({ ...dbOptions, url: adminUrl, poolMax: 1 });
      await again.exec(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/**
 * The shipped config.yaml with test settings: a fixed secret, a temporary data_dir, cheap argon2 parameters (fast
 * tests; production parameters are measured in the benchmarks), and `overrides` merged on top.
 */
export function testConfig(
  dataDir: string,
  overrides: DeepPartial<Config> = {},
  env: Record<string, string> = {},
): Config {
  const secretsFile = join(dataDir, 'test-secrets.yaml');
  writeFileSync(secretsFile, '{}\n');
  const base = loadConfig({
    env: {
      CONFIG_FILE: join(REPO_ROOT, 'config.yaml'),
      SECRETS_FILE: secretsFile,
      DATA_DIR: dataDir,
      AUTH_SECRET: TEST_SECRET,
      LOG_LEVEL: 'silent',
      ...env,
    },
    cwd: REPO_ROOT,
  });
  const config = structuredClone(base) as Config & Record<string, unknown>;
  (config.auth.argon2 as { memory_cost: number; time_cost: number }).memory_cost = 1024;
  (config.auth.argon2 as { memory_cost: number; time_cost: number }).time_cost = 1;
  // Per-IP rate limits off and a lockout no test reaches by accident (all requests come from one address); the tests
  // of those guards turn them on with their own numbers.
  (config.rate_limit as { enabled: boolean }).enabled = false;
  (config.lockout as { max_failures: number }).max_failures = 1000;
  merge(config, overrides as Record<string, unknown>);
  return config;
}

function merge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(source)) {
    const t = target[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && t && typeof t === 'object') {
      merge(t as Record<string, unknown>, v as Record<string, unknown>);
    } else {
      target[k] = v;
    }
  }
}

/** Captured log lines (JSON strings) of an app built with `captureLogs`. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface TestApp {
  app: Awaited<ReturnType<typeof buildApp>>;
  db: Database;
  config: Config;
  testDb: TestDatabase;
  logs: LogCapture;
  close(): Promise<void>;
}

/** A gateway on its own fresh database; logs captured at debug level (for redaction tests). */
export async function createTestApp(
  options: {
    config?: DeepPartial<Config>;
    env?: Record<string, string>;
    kind?: 'postgres' | 'pglite';
    /** Build on this database instead of a fresh one (one PGlite per file); close() then leaves it to its owner. */
    shared?: TestDatabase;
  } = {},
): Promise<TestApp> {
  const testDb = options.shared ?? (await createTestDatabase({ kind: options.kind }));
  const config = testConfig(testDb.dataDir, options.config, options.env);
  const logs = new LogCapture();
  // The production logger options (redaction, serializers) at debug level, written to `logs`.
  const logger = { ...(loggerOptions('debug') as object), stream: logs };
  const app = await buildApp({ config, db: testDb.db, logger: logger as never });
  await app.ready();
  return {
    app,
    db: testDb.db,
    config,
    testDb,
    logs,
    async close() {
      await app.close();
      if (!options.shared) await testDb.drop();
    },
  };
}

/** Registers a user through the REST route and returns its id and token. */
export async function registerUser(
  app: TestApp['app'],
  body: { email?: string; password?: string; name?: string } = {},
): Promise<{ userId: string; token: string; email: string; password: string }> {
  const email = body.email ?? `u${randomBytes(5).toString('hex')}@example.com`;
  const password = body.password ?? 'SecurePassword123!';
  const res = await app.inject({
    method: 'POST',
    url: '/auth/register',
    payload: { email, password, name: body.name ?? 'Test User' },
  });
  if (res.statusCode !== 201) throw new Error(`register failed: ${res.statusCode} ${res.body}`);
  const json = res.json() as { userId: string; token: string };
  return { ...json, email, password };
}

/**
 * Signs `user` in through Better Auth's own route, from `origin` (Better Auth checks it), and returns the Cookie
 * header its answer sets (the session cookie a browser would send back).
 */
export async function betterAuthCookie(
  app: TestApp['app'],
  user: { email: string; password: string },
  origin: string,
): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/auth/sign-in/email',
    headers: { origin, 'content-type': 'application/json' },
    payload: { email: user.email, password: user.password },
  });
  if (res.statusCode !== 200) throw new Error(`Better Auth sign-in failed: ${res.statusCode} ${res.body}`);
  return ([] as string[])
    .concat(res.headers['set-cookie'] ?? [])
    .map((c) => c.split(';')[0])
    .join('; ');
}
