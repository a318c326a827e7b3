import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGateway } from '../../src/cli/gateway-commands.js';
import { type NodeRun, runNode } from '../helpers/run-node.js';
import { createTestApp, REPO_ROOT, registerUser, TEST_SECRET, type TestApp } from '../helpers/test-app.js';

// The CLI is a separate process: it needs a database server both it and the test can reach (PostgreSQL).
describe.skipIf(!process.env.TEST_DATABASE_URL)('gateway CLI (npm run gateway -- <command>)', () => {
  let t: TestApp;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await createTestApp({ kind: 'postgres' });
    const secrets = join(t.testDb.dataDir, 'cli-secrets.yaml');
    writeFileSync(secrets, '{}\n');
    env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DATABASE_URL: t.testDb.url as string,
      CONFIG_FILE: join(REPO_ROOT, 'config.yaml'),
      SECRETS_FILE: secrets,
      DATA_DIR: t.testDb.dataDir,
      AUTH_SECRET: TEST_SECRET,
    };
  });
  afterAll(() => t?.close());

  /** The real process, as an operator runs it (slow to start under load: used for the exit-code contract). */
  const spawned = (args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) =>
    runNode(['--import', 'tsx', 'src/cli/gateway.ts', ...args], {
      env: { ...env, ...options.env },
      stdin: options.stdin,
    });

  /** The same commands in-process (same code path after argv and the environment). */
  const gateway = async (args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) => {
    let stdout = '';
    let stderr = '';
    const code = await runGateway(args, {
      out: (line) => {
        stdout += `${line}\n`;
      },
      err: (line) => {
        stderr += `${line}\n`;
      },
      readStdin: async () => options.stdin ?? '',
      env: { ...env, ...options.env },
    });
    return { code, stdout, stderr } as NodeRun;
  };

  const login = (email: string, password: string) =>
    t.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });

  it('prints help (exit 0 with --help, 2 without a command) and refuses unknown commands and options with 2', async () => {
    const help = await spawned(['--help']);
    expect(help.code).toBe(0);
    for (const command of [
      'migrate',
      'create-user',
      'set-license',
      'link-telegram',
      'revoke-sessions',
      'create-admin',
    ]) {
      expect(help.stdout).toContain(command);
    }
    expect((await gateway([])).code).toBe(2);
    const unknown = await spawned(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    // Names Object.prototype has are no commands either (they were looked up as COMMANDS[name], and crashed).
    for (const name of ['constructor', 'toString', '__proto__']) {
      const inherited = await gateway([name]);
      expect([name, inherited.code, inherited.stderr.includes(`unknown command "${name}"`)]).toEqual([name, 2, true]);
    }
    const badOption = await gateway(['revoke-sessions', '--force']);
    expect(badOption.code).toBe(2);
    const commandHelp = await gateway(['set-license', '--help']);
    expect(commandHelp.code).toBe(0);
    expect(commandHelp.stdout).toContain('set-license <user> --type <type>');
  });

  it('migrate applies the schema again (idempotent), exit 0', async () => {
    const res = await spawned(['migrate']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('schema applied');
  });

  it('exits 78 on a configuration error, naming the key', async () => {
    const bad = join(t.testDb.dataDir, 'bad-config.yaml');
    const shipped = readFileSync(join(REPO_ROOT, 'config.yaml'), 'utf8');
    writeFileSync(bad, shipped.replace(/^ {2}deny: \[\]/m, '  deny: ["10.0.0.0/99"]'));
    const res = await spawned(['migrate'], { env: { CONFIG_FILE: bad } });
    expect(res.code).toBe(78);
    expect(res.stderr).toContain('ip_restrictions.deny.0');
  });

  it('create-user with a password from stdin: the user can sign in; a second time fails with 1', async () => {
    const res = await spawned(
      ['create-user', '--email', 'Cli.User@Example.com', '--name', 'Cli', '--license', 'pro', '--password-stdin'],
      {
        stdin: 'CliPassword123!\n',
      },
    );
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/created user user_\d+_\w+ <cli.user@example.com> \(license pro\)/);
    expect(res.stdout).not.toContain('CliPassword123!');
    const signIn = await login('cli.user@example.com', 'CliPassword123!');
    expect(signIn.statusCode).toBe(200);
    const session = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${signIn.json().token}` },
    });
    expect(session.json().license.type).toBe('pro');

    const again = await gateway(['create-user', '--email', 'cli.user@example.com'], {});
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');
  });

  it('create-user without --password-stdin prints a generated password once; usage errors exit 2', async () => {
    const res = await gateway(['create-user', '--email', 'generated@example.com']);
    expect(res.code).toBe(0);
    const password = /password: (\S+)/.exec(res.stdout)?.[1] as string;
    expect(password.length).toBeGreaterThanOrEqual(20);
    expect((await login('generated@example.com', password)).statusCode).toBe(200);
    expect((await gateway(['create-user'])).code).toBe(2);
    expect((await gateway(['create-user', '--email', 'x@example.com', '--license', 'platinum'])).code).toBe(2);
    const short = await gateway(['create-user', '--email', 'short@example.com', '--password-stdin'], {
      stdin: 'short',
    });
    expect(short.code).toBe(1);
  });

  // Regression: the CLI took any "x@y" without spaces, so it created accounts (`ann<mallory@evil.example>`, display
  // names, lists, over 254 characters) whose address every /auth route refuses.
  it('create-user and create-admin take exactly the addresses the sign-in routes take', async () => {
    const longest = `${'a'.repeat(64)}@${'b'.repeat(177)}.example.com`; // 254 characters: the RFC 5321 cap
    for (const email of [
      'ann<mallory@evil.example>',
      'Ann <ann@example.com>',
      '"ann"@example.com',
      'ann@example.com,bob@example.com',
      'ann;bob@example.com',
      'ann(comment)@example.com',
      `a${longest}`,
    ]) {
      const created = await gateway(['create-user', '--email', email, '--password-stdin'], {
        stdin: 'SecurePassword123!',
      });
      expect([email, created.code]).toEqual([email, 2]);
      expect(created.stderr).toContain('--email');
      expect([email, (await gateway(['create-admin', '--email', email])).code]).toEqual([email, 2]);
      expect([email, (await login(email, 'SecurePassword123!')).statusCode]).toEqual([email, 400]);
    }
    const { rows } = await t.db.query("SELECT 1 FROM users WHERE email LIKE '%mallory%' OR email LIKE '%bbbbbbbb%'");
    expect(rows).toEqual([]);
    // The longest address is taken; case and surrounding spaces are ignored, as by the routes.
    for (const email of [longest.toUpperCase(), ' Spaced@Example.com ']) {
      const ok = await gateway(['create-user', '--email', email, '--password-stdin'], { stdin: 'SecurePassword123!' });
      expect([email, ok.code]).toEqual([email, 0]);
      expect((await login(email.trim().toLowerCase(), 'SecurePassword123!')).statusCode).toBe(200);
    }
  });

  it('set-license by email or id; unknown users fail with 1, bad JSON is a usage error', async () => {
    const user = await registerUser(t.app);
    const res = await gateway([
      'set-license',
      user.email,
      '--type',
      'enterprise',
      '--limits',
      '{"max_ws_connections":3}',
    ]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const ctx = await t.app.authenticator.authenticateToken(user.token);
    expect(ctx?.license).toMatchObject({ type: 'enterprise', resourceLimits: { max_ws_connections: 3 } });
    // The CLI is another process: this one learns of the change by NOTIFY (the cached session holds the old license
    // until then). Wait for that delivery, nothing more.
    const changed = new Promise<void>((resolve) => {
      const off = t.app.sessionEvents.onUserChanged((userId) => {
        if (userId !== user.userId) return;
        off();
        resolve();
      });
    });
    expect((await gateway(['set-license', user.userId, '--type', 'free'])).code).toBe(0);
    await changed;
    expect((await t.app.authenticator.authenticateToken(user.token))?.license.type).toBe('free');
    const missing = await gateway(['set-license', 'nobody@example.com', '--type', 'pro']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no user');
    expect((await gateway(['set-license', user.userId, '--type', 'pro', '--features', '[1]'])).code).toBe(2);
    expect((await gateway(['set-license', user.userId])).code).toBe(2);
  });

  // Regression: JSON PostgreSQL cannot store (a \u0000 escape, a lone surrogate) failed with exit 1 and the raw
  // database message, and {"x":1e999} was stored as null.
  it('set-license refuses --features/--limits JSON the admin API refuses, or that cannot be stored as given (2)', async () => {
    const user = await registerUser(t.app);
    const deep = `${'{"a":'.repeat(70)}1${'}'.repeat(70)}`; // deeper than the HTTP side walks
    for (const [flag, json] of [
      ['--features', '{"note":"\\u0000"}'],
      ['--features', '{"\\u0000":true}'],
      ['--features', '{"note":["\\ud800"]}'],
      ['--limits', '{"max_ws_connections":1e999}'],
      ['--limits', '{"a":{"b":-1e999}}'],
      ['--limits', deep],
      // The admin API's limits on overrides (review F: the CLI stored these, exit 0).
      ['--features', JSON.stringify(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, true])))],
      ['--limits', JSON.stringify({ ['k'.repeat(65)]: 1 })],
    ] as const) {
      const res = await gateway(['set-license', user.userId, '--type', 'pro', flag, json]);
      expect([json, res.code]).toEqual([json, 2]);
      expect(res.stderr, json).toContain(`${flag} `);
    }
    expect((await t.app.authenticator.authenticateToken(user.token))?.license.type).toBe('free');
    // 40 emoji make a key of 40 characters (80 UTF-16 units), as the admin API counts them (review H).
    expect(
      (
        await gateway([
          'set-license',
          user.userId,
          '--type',
          'pro',
          '--limits',
          JSON.stringify({ ['\u{1F600}'.repeat(40)]: 1 }),
        ])
      ).code,
    ).toBe(0);
    // A surrogate pair (an emoji) is text like any other.
    const emoji = await gateway([
      'set-license',
      user.userId,
      '--type',
      'pro',
      '--features',
      '{"note":"\\ud83d\\ude00"}',
    ]);
    expect(emoji.code).toBe(0);
  });

  // Regression: checkLicenseType looked the type up as config.licenses.types[type], which also finds
  // Object.prototype's names: set-license --type constructor was taken (exit 0) and the user lost chat.
  it('set-license and create-user refuse a type that is only an inherited name (usage error, 2)', async () => {
    const user = await registerUser(t.app);
    for (const type of ['constructor', 'toString', '__proto__']) {
      const res = await gateway(['set-license', user.userId, '--type', type]);
      expect([type, res.code]).toEqual([type, 2]);
      expect(res.stderr).toContain(`unknown license type "${type}"`);
      const created = await gateway(['create-user', '--email', `inherited-${type}@example.com`, '--license', type]);
      expect([type, created.code]).toEqual([type, 2]);
    }
    expect((await t.app.authenticator.authenticateToken(user.token))?.license.features).toMatchObject({ chat: true });
  });

  it('link-telegram links a numeric id; the Authenticator then knows the user; taken ids fail with 1', async () => {
    const user = await registerUser(t.app);
    const res = await gateway(['link-telegram', user.email, '5550001']);
    expect(res.code).toBe(0);
    expect((await t.app.authenticator.authenticateTelegram(5550001))?.userId).toBe(user.userId);
    expect((await gateway(['link-telegram', user.email, '5550001'])).code).toBe(0); // already theirs: idempotent
    const other = await registerUser(t.app);
    const taken = await gateway(['link-telegram', other.userId, '5550001']);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain('already linked');
    expect((await gateway(['link-telegram', other.userId, '@handle'])).code).toBe(2);
  });

  // Regression: "05550002" was stored as typed, so no update (id 5550002) matched and 5550002 stayed free for another.
  it('link-telegram stores the id as Telegram sends it (no leading zero) and refuses ids Telegram cannot have', async () => {
    const ann = await registerUser(t.app);
    const linked = await gateway(['link-telegram', ann.email, '05550002']);
    expect(linked.code).toBe(0);
    expect(linked.stdout).toContain('Telegram user 5550002 linked');
    expect((await t.app.authenticator.authenticateTelegram(5550002))?.userId).toBe(ann.userId);
    const bob = await registerUser(t.app);
    expect((await gateway(['link-telegram', bob.email, '5550002'])).code).toBe(1); // already Ann's
    expect((await gateway(['link-telegram', bob.email, '005550002'])).code).toBe(1);
    const max = String(2 ** 52 - 1); // at most 52 significant bits (Bot API, User.id)
    expect((await gateway(['link-telegram', bob.email, max])).code).toBe(0);
    expect((await t.app.authenticator.authenticateTelegram(2 ** 52 - 1))?.userId).toBe(bob.userId);
    for (const id of ['0', '000', String(2 ** 52), '99999999999999999999', '-5', '+5', '5.0', '1e6', ' 5', '']) {
      const res = await gateway(['link-telegram', bob.email, id]);
      expect(res.code, id).toBe(2);
      expect(res.stderr, id).toContain('<telegram-user-id>');
    }
  });

  // Regression: extra arguments were ignored: `revoke-sessions <u1> <u2>` ended only u1's sessions and exited 0.
  it('refuses more or fewer arguments than a command takes (usage error, 2, nothing done)', async () => {
    const [ann, bob] = await Promise.all([registerUser(t.app), registerUser(t.app)]);
    const both = await gateway(['revoke-sessions', ann.userId, bob.userId]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain(`unexpected argument "${bob.userId}"`);
    expect(await t.app.authenticator.authenticateToken(ann.token)).not.toBeNull();
    expect(await t.app.authenticator.authenticateToken(bob.token)).not.toBeNull();
    for (const args of [
      ['migrate', 'now'],
      ['create-user', 'extra@example.com', '--email', 'extra@example.com'],
      ['create-admin', '--email', 'extra@example.com', 'extra'],
      ['set-license', ann.userId, bob.userId, '--type', 'pro'],
      ['link-telegram', ann.userId, '5550100', '5550101'],
    ]) {
      const res = await gateway(args);
      expect([args, res.code]).toEqual([args, 2]);
      expect(res.stderr).toContain('unexpected argument');
    }
    for (const args of [['revoke-sessions'], ['link-telegram', ann.userId], ['set-license', '--type', 'pro']]) {
      const res = await gateway(args);
      expect([args, res.code]).toEqual([args, 2]);
      expect(res.stderr).toContain('missing <');
    }
    const { rows } = await t.db.query("SELECT 1 FROM users WHERE email = 'extra@example.com'");
    expect(rows).toEqual([]);
    expect((await t.app.authenticator.authenticateToken(ann.token))?.license.type).toBe('free');
    expect(await t.app.authenticator.authenticateTelegram(5550100)).toBeNull();
  });

  it("revoke-sessions ends a user's sessions", async () => {
    const user = await registerUser(t.app);
    const res = await gateway(['revoke-sessions', user.email]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('revoked 1 session(s)');
    expect(await t.app.authenticator.authenticateToken(user.token)).toBeNull();
  });

  it('create-admin promotes an existing user, or creates an administrator', async () => {
    const user = await registerUser(t.app);
    await t.db.query('UPDATE users SET email_verified = true WHERE id = $1', [user.userId]);
    const promote = await gateway(['create-admin', '--email', user.email]);
    expect(promote.code).toBe(0);
    const list = await t.app.inject({
      method: 'GET',
      url: '/admin/users',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(list.statusCode).toBe(200);

    const created = await gateway(['create-admin', '--email', 'root@example.com', '--password-stdin'], {
      stdin: 'RootPassword123!',
    });
    expect(created.code).toBe(0);
    const signIn = await login('root@example.com', 'RootPassword123!');
    expect(signIn.statusCode).toBe(200);
    const admin = await t.app.inject({
      method: 'GET',
      url: '/admin/users?q=root',
      headers: { authorization: `Bearer ${signIn.json().token}` },
    });
    expect(admin.json().users).toMatchObject([{ email: 'root@example.com', role: 'admin' }]);

    // Each change is an admin.action audit event from the CLI, as through the admin API.
    const { rows } = await t.db.query<{ channel: string; details: { action: string; target: string } }>(
      `SELECT channel, details FROM auth_audit_log WHERE event = 'admin.action' ORDER BY id`,
    );
    expect(rows.map((r) => [r.channel, r.details.action])).toEqual(
      expect.arrayContaining([
        ['cli', 'role.set'],
        ['cli', 'user.create'],
      ]),
    );
    expect(rows.find((r) => r.details.action === 'role.set')?.details.target).toBe(user.userId);
  });

  // Regression: it promoted whoever had registered the address first (anyone can register any address), and
  // ignored --password-stdin, so the operator believed the account had the password they typed.
  it('create-admin refuses an existing account whose address is unproven, and a password for an existing account', async () => {
    const squatter = await registerUser(t.app, { email: 'ops@example.com' });
    const refused = await gateway(['create-admin', '--email', 'ops@example.com', '--password-stdin'], {
      stdin: 'OperatorsOwnPassword1!',
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('already exists');
    const unproven = await gateway(['create-admin', '--email', 'ops@example.com']);
    expect(unproven.code).toBe(1);
    expect(unproven.stderr).toContain('has not verified its address');
    const roleOf = async () =>
      (await t.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [squatter.userId])).rows[0]?.role;
    expect(await roleOf()).toBe('user');
    // The operator who registered it themselves says so.
    const trusted = await gateway(['create-admin', '--email', 'ops@example.com', '--trust-unverified']);
    expect(trusted.code).toBe(0);
    expect(await roleOf()).toBe('admin');
  });
});
