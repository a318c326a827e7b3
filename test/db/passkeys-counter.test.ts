import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/test-app.js';

// Storage tests: CI runs this folder on PostgreSQL and again on PGlite (npm run test:storage).
describe(`passkeys.counter holds an unsigned 32-bit counter (${process.env.TEST_DATABASE_URL ? 'PostgreSQL' : 'PGlite'})`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t?.drop());

  const counterColumn = async () =>
    (
      await t.db.query<{ type: string; not_null: boolean; default: string }>(
        `SELECT format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
                pg_get_expr(d.adbin, d.adrelid) AS default
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = 'passkeys'::regclass AND a.attname = 'counter'`,
      )
    ).rows[0];
  /** The table's storage file: a new one means the table was rewritten. */
  const storageOf = async () =>
    String((await t.db.query<{ f: unknown }>("SELECT pg_relation_filenode('passkeys') AS f")).rows[0]?.f);
  const counterOf = async (id: string) =>
    (await t.db.query<{ c: string }>('SELECT counter::text AS c FROM passkeys WHERE id = $1', [id])).rows[0]?.c;

  it('is BIGINT in a new database', async () => {
    expect(await counterColumn()).toEqual({ type: 'bigint', not_null: true, default: '0' });
  });

  // Regression: the column was INTEGER (max 2147483647), so a counter past it failed every sign-in with a 500.
  it('an INTEGER column of an existing database becomes BIGINT, its counters kept', async () => {
    await t.db.query("INSERT INTO users (id, email) VALUES ('user_pk', 'pk@example.com')");
    await t.db.query('ALTER TABLE passkeys ALTER COLUMN counter TYPE INTEGER'); // as schema.sql used to create it
    await t.db.query('DROP TABLE gateway_schema_version'); // nor did the gateway record the version it applied
    await t.db.query(
      `INSERT INTO passkeys (id, user_id, credential_id, credential_public_key, counter)
       VALUES ('pk_old', 'user_pk', 'cred_old', 'key', 2147483647)`,
    );
    expect((await counterColumn())?.type).toBe('integer');

    await migrate(t.db);
    expect(await counterColumn()).toEqual({ type: 'bigint', not_null: true, default: '0' });
    expect(await counterOf('pk_old')).toBe('2147483647');
    await t.db.query("UPDATE passkeys SET counter = 4294967295 WHERE id = 'pk_old'");
    expect(await counterOf('pk_old')).toBe('4294967295');
  });

  it('applied again, changes nothing: no rewrite, and no lock that waits for readers of passkeys', async () => {
    const storage = await storageOf();
    await migrate(t.db);
    await migrate(t.db);
    expect(await storageOf()).toBe(storage);
    expect(await counterColumn()).toEqual({ type: 'bigint', not_null: true, default: '0' });
    expect(await counterOf('pk_old')).toBe('4294967295');

    if (!t.url) return; // PGlite has a single connection: no concurrent reader to wait for
    // A transaction that read passkeys holds ACCESS SHARE until it ends; an ALTER TABLE (ACCESS EXCLUSIVE) at every
    // start would queue behind it, and every query on passkeys behind that.
    let waitedFor: string | undefined;
    let done = false;
    let applied: Promise<void> = Promise.resolve();
    let doneWhileRead = false;
    await t.db.transaction(async (tx) => {
      await tx.query('SELECT 1 FROM passkeys LIMIT 1');
      applied = migrate(t.db).then(() => {
        done = true;
      });
      for (const deadline = Date.now() + 10_000; !done && Date.now() < deadline; await sleep(20)) {
        const { rows } = await t.db.query<{ mode: string }>(
          "SELECT mode FROM pg_locks WHERE relation = 'passkeys'::regclass AND NOT granted",
        );
        waitedFor = rows[0]?.mode;
        if (waitedFor) break;
      }
      doneWhileRead = done;
    });
    await applied;
    expect(waitedFor).toBeUndefined();
    expect(doneWhileRead).toBe(true);
  });
});
