import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startArguments } from '../../bench/lib.js';
import { type Gateway, startGateway, testConfigFile } from '../helpers/gateway-process.js';
import { runNode } from '../helpers/run-node.js';
import { TEST_SECRET } from '../helpers/test-app.js';

// Regression: with the gateway running on the embedded database, `create-user` printed "created user ..." and
// `revoke-sessions` "revoked 3 session(s)", exit 0, while their writes were lost (a second PGlite on the same files):
// the revoked token kept working. Every other opener of that data directory is now refused, with exit 1.

describe('the embedded database beside a running gateway', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-lock-cli-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/root',
    NODE_ENV: 'production',
    AUTH_SECRET: TEST_SECRET,
    CONFIG_FILE: testConfigFile(dir),
    SECRETS_FILE: join(dir, 'secrets.yaml'),
    DATA_DIR: dir,
    DATABASE_URL: '', // the embedded database, whatever the test runner's environment holds
    LOG_LEVEL: 'warn',
  };
  let gateway: Gateway | undefined;
  afterAll(async () => {
    await gateway?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  // Without the lock a second gateway would serve on and on: it is killed after 30 s, so the test fails, not hangs.
  const run = (args: string[], stdin = '') => runNode(args, { env, stdin, timeoutMs: 30_000 });
  const cli = (...args: string[]) => run(['--import', 'tsx', 'src/cli/gateway.ts', ...args], 'CliPassword123!\n');

  it('the CLI, npm run migrate and a second gateway are refused with one line and exit 1; the CLI works once it stops', async () => {
    gateway = await startGateway(env);
    const pgdata = join(dir, 'pgdata');
    const inUse = `the embedded database at ${pgdata} is in use by process ${gateway.child.pid}: `;

    const [create, migrate, second] = await Promise.all([
      cli('create-user', '--email', 'ann@example.com', '--password-stdin'),
      run(['--import', 'tsx', 'src/cli/migrate.ts']),
      run([...startArguments()]),
    ]);
    expect(create).toMatchObject({ code: 1, stdout: '' });
    expect(create.stderr).toBe(
      `create-user failed: ${inUse}stop the gateway first, or run this command against PostgreSQL (DATABASE_URL)\n`,
    );
    expect(migrate).toMatchObject({ code: 1, stdout: '' });
    expect(migrate.stderr).toBe(
      `migrate failed: ${inUse}stop the gateway first (it applies the schema itself at start)\n`,
    );
    expect(second.code).toBe(1);
    expect(second.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^fatal: ${inUse}`))]);

    // The gateway never saw a second writer: it still serves, and stops cleanly.
    expect((await fetch(`${gateway.url}/auth/health`)).status).toBe(200);
    expect(await gateway.stop()).toBe(0);

    const created = await cli('create-user', '--email', 'ann@example.com', '--password-stdin');
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('created user');
  });
});
