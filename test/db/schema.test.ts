import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, SCHEMA_FILE } from '../../src/db/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/test-app.js';

// Storage tests: CI runs this folder on PostgreSQL and again on PGlite (npm run test:storage).
describe(`schema.sql (${process.env.TEST_DATABASE_URL ? 'PostgreSQL' : 'PGlite'})`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t?.drop());

  const columns = async (table: string) =>
    (
      await t.db.query<{ column_name: string }>(
        'SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position',
        [table],
      )
    ).rows.map((r) => r.column_name);

  it('has the design’s seven tables with the design’s column names', async () => {
    expect(await columns('users')).toEqual(
      expect.arrayContaining(['id', 'email', 'email_verified', 'name', 'created_at', 'updated_at']),
    );
    expect(await columns('user_credentials')).toEqual(expect.arrayContaining(['user_id', 'password_hash']));
    expect(await columns('sessions')).toEqual(
      expect.arrayContaining(['id', 'user_id', 'expires_at', 'ip_address', 'user_agent']),
    );
    expect(await columns('passkeys')).toEqual(
      expect.arrayContaining(['id', 'user_id', 'credential_id', 'credential_public_key', 'counter', 'transports']),
    );
    expect(await columns('verification_tokens')).toEqual(expect.arrayContaining(['identifier', 'token', 'expires_at']));
    expect(await columns('user_licenses')).toEqual(
      expect.arrayContaining(['user_id', 'license_type', 'features', 'resource_limits']),
    );
    expect(await columns('user_channel_links')).toEqual(
      expect.arrayContaining(['user_id', 'channel_type', 'channel_user_id']),
    );
  });

  it('applies again without changing or failing anything', async () => {
    await t.db.query("INSERT INTO users (id, email) VALUES ('user_keep', 'keep@example.com')");
    await migrate(t.db);
    await migrate(t.db);
    const { rows } = await t.db.query("SELECT id FROM users WHERE id = 'user_keep'");
    expect(rows).toHaveLength(1);
  });

  // Regression: every start ran schema.sql's DDL, which locks users and sessions even when it changes nothing: a start
  // beside serving gateways deadlocked with their logins (40P01 on either side) and queued them behind long reads.
  it('applied again with the schema current, takes no lock on users or sessions', async () => {
    await migrate(t.db);
    if (!t.url) return; // PGlite has a single connection: no other session to hold a lock
    let applied: Promise<void> = Promise.resolve();
    const doneWhileLocked = await t.db.transaction(async (tx) => {
      // Stronger than any live traffic (row locks, a long read): a migration that locked either table in any mode waits.
      await tx.query('LOCK TABLE users, sessions IN ACCESS EXCLUSIVE MODE');
      applied = migrate(t.db);
      return Promise.race([applied.then(() => true), sleep(3000).then(() => false)]);
    });
    await applied;
    expect(doneWhileLocked).toBe(true);
  });

  it('applies a changed schema.sql at the next start, and records its version', async () => {
    const hasIndex = async () =>
      (await t.db.query("SELECT 1 FROM pg_indexes WHERE indexname = 'sessions_expires_at_idx'")).rows.length === 1;
    await t.db.query('DROP INDEX sessions_expires_at_idx');
    await migrate(t.db);
    expect(await hasIndex()).toBe(false); // the recorded version is current: nothing is run
    await t.db.query("UPDATE gateway_schema_version SET sha256 = 'an older schema.sql'");
    await migrate(t.db);
    expect(await hasIndex()).toBe(true);
    const { rows } = await t.db.query<{ sha256: string }>('SELECT sha256 FROM gateway_schema_version');
    expect(rows).toEqual([{ sha256: createHash('sha256').update(readFileSync(SCHEMA_FILE, 'utf8')).digest('hex') }]);
  });

  // Regression: a process starting while another migrated waited for the schema lock on a serving connection, under
  // statement_timeout (10 s) and the client's query timeout: a migration longer than that failed every such start.
  it.runIf(process.env.TEST_DATABASE_URL)(
    'a start waits for another process’s migration longer than statement_timeout, then applies its own',
    async () => {
      const current = async () => (await t.db.query('SELECT sha256 FROM gateway_schema_version')).rows;
      const expected = await current();
      // The other process: holds the schema lock for longer than the starting one's statement_timeout plus its
      // client-side margin (1 s + 2 s), and leaves an older schema version recorded.
      let peerLocked: () => void = () => {};
      const locked = new Promise<void>((resolve) => {
        peerLocked = resolve;
      });
      const peer = t.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock(727210001)');
        await tx.query("UPDATE gateway_schema_version SET sha256 = 'an older schema.sql'");
        peerLocked();
        await sleep(4500);
      });
      await locked;
      const starting = await openDatabase({
        url: t.url as string,
        dataDir: t.dataDir,
        poolMax: 2,
        connectTimeoutSeconds: 5,
        statementTimeoutSeconds: 1,
      });
      try {
        const started = Date.now();
        await migrate(starting);
        expect(Date.now() - started).toBeGreaterThanOrEqual(3500);
        expect(await current()).toEqual(expected);
      } finally {
        await peer;
        await starting.close();
      }
    },
    20_000,
  );

  it('psql -f schema.sql runs on a prepared database, twice, without errors', () => {
    if (!t.url) return; // psql needs a server
    for (let i = 0; i < 2; i++) {
      execFileSync('psql', [t.url, '-v', 'ON_ERROR_STOP=1', '-q', '-f', SCHEMA_FILE], { stdio: 'pipe' });
    }
  });

  // Regression: the design's migration SQL copies addresses as typed; lookups compare the stored value with the
  // lower-cased input, so such a user got no sign-in, no reset mail, and EMAIL_TAKEN on registering again.
  it('stores users.email lower-cased whoever writes it, and lower-cases rows written before', async () => {
    await t.db.query("INSERT INTO users (id, email) VALUES ('user_mixed', 'Ada.Lovelace@Example.com')");
    await t.db.query("UPDATE users SET email = 'Ada.Byron@Example.COM' WHERE id = 'user_mixed'");
    const { rows } = await t.db.query<{ email: string }>("SELECT email FROM users WHERE id = 'user_mixed'");
    expect(rows[0]?.email).toBe('ada.byron@example.com');
    await t.db.query('ALTER TABLE users DISABLE TRIGGER users_email_lower');
    await t.db.query("UPDATE users SET email = 'Ada.Byron@Example.COM' WHERE id = 'user_mixed'");
    await t.db.query('ALTER TABLE users ENABLE TRIGGER users_email_lower');
    await t.db.query('DELETE FROM gateway_schema_version');
    await migrate(t.db);
    const again = await t.db.query<{ email: string }>("SELECT email FROM users WHERE id = 'user_mixed'");
    expect(again.rows[0]?.email).toBe('ada.byron@example.com');
    await t.db.query("DELETE FROM users WHERE id = 'user_mixed'");
  });

  it('users.email is unique without regard to case', async () => {
    await t.db.query("INSERT INTO users (id, email) VALUES ('user_a', 'Case@Example.com')");
    await expect(
      t.db.query("INSERT INTO users (id, email) VALUES ('user_b', 'case@example.COM')"),
    ).rejects.toMatchObject({
      code: '23505',
    });
  });

  it('(channel_type, channel_user_id) is unique; the design’s raw insert works; other channel types are accepted', async () => {
    await t.db.query("INSERT INTO users (id, email) VALUES ('user_tg', 'tg@example.com')");
    await t.db.query(
      "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ('user_tg', 'telegram', '987654321')",
    );
    await expect(
      t.db.query(
        "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ('user_a', 'telegram', '987654321')",
      ),
    ).rejects.toMatchObject({ code: '23505' });
    for (const type of ['slack', 'discord', 'websocket', 'matrix']) {
      await t.db.query('INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, $2, $3)', [
        'user_tg',
        type,
        'x1',
      ]);
    }
    await expect(
      t.db.query(
        "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ('user_tg', 'Bad Type', '1')",
      ),
    ).rejects.toMatchObject({ code: '23514' });
  });

  it('deleting a user cascades to every table that references it', async () => {
    const id = 'user_cascade';
    await t.db.query("INSERT INTO users (id, email) VALUES ($1, 'cascade@example.com')", [id]);
    await t.db.query(
      "INSERT INTO user_credentials (id, user_id, account_id, provider_id, password_hash) VALUES ('c1', $1, $1, 'credential', 'h')",
      [id],
    );
    await t.db.query(
      "INSERT INTO sessions (id, user_id, token, expires_at) VALUES ('s1', $1, 'tok1', now() + interval '1 day')",
      [id],
    );
    await t.db.query(
      "INSERT INTO passkeys (id, user_id, credential_id, credential_public_key) VALUES ('p1', $1, 'cred1', 'pk')",
      [id],
    );
    await t.db.query("INSERT INTO user_licenses (user_id, license_type) VALUES ($1, 'pro')", [id]);
    await t.db.query(
      "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', 'c-1')",
      [id],
    );
    await t.db.query('DELETE FROM users WHERE id = $1', [id]);
    for (const table of ['user_credentials', 'sessions', 'passkeys', 'user_licenses', 'user_channel_links']) {
      const { rows } = await t.db.query(`SELECT 1 FROM ${table} WHERE user_id = $1`, [id]);
      expect(rows, table).toHaveLength(0);
    }
  });

  it('has indexes for the hot lookups', async () => {
    const { rows } = await t.db.query<{ indexname: string }>(
      'SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()',
    );
    const names = rows.map((r) => r.indexname);
    for (const ix of [
      'users_email_lower_key',
      'sessions_user_id_idx',
      'sessions_token_key',
      'passkeys_credential_id_key',
      'user_credentials_user_id_idx',
    ]) {
      expect(names).toContain(ix);
    }
  });

  it('serves the lookups every sign-in makes from an index, never a table scan', async () => {
    // Better Auth's own queries: a user by email (exact match; emails are stored lower-cased), a session by token.
    const plans: string[] = [];
    await t.db.transaction(async (tx) => {
      await tx.query('SET LOCAL enable_seqscan = off');
      for (const q of [
        `EXPLAIN SELECT * FROM users WHERE email = 'someone@example.com'`,
        `EXPLAIN SELECT * FROM users WHERE lower(email) = lower('Someone@example.com')`,
        `EXPLAIN SELECT * FROM sessions WHERE token = 'x'`,
        `EXPLAIN SELECT * FROM user_credentials WHERE user_id = 'x'`,
      ]) {
        const { rows } = await tx.query<{ 'QUERY PLAN': string }>(q);
        plans.push(rows.map((r) => r['QUERY PLAN']).join(' '));
      }
    });
    for (const plan of plans) expect(plan).not.toMatch(/Seq Scan/);
  });
});
