import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../../src/db/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/test-app.js';

// Storage tests: CI runs this folder on PostgreSQL and again on PGlite (which has no prepared statements: the
// setting changes nothing there, and both values must work).
describe(`database.prepared_statements (${process.env.TEST_DATABASE_URL ? 'PostgreSQL' : 'PGlite'})`, () => {
  let t: TestDatabase;
  const dataDir = mkdtempSync(join(tmpdir(), 'gw-prepared-'));
  const open = (preparedStatements: boolean) =>
    openDatabase({
      url: t.url ?? '',
      dataDir: t.url ? dataDir : t.dataDir,
      poolMax: 1, // one connection: pg_prepared_statements shows that connection's statements
      connectTimeoutSeconds: 5,
      statementTimeoutSeconds: 30,
      preparedStatements,
    });
  const preparedByUs = async (db: Database) =>
    (
      await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE $1`, [
        'gw\\_%',
      ])
    ).rows[0]?.n ?? 0;

  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    await t?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it.each([true, false])('prepared_statements %s: queries, transactions and scripts work', async (prepared) => {
    if (!t.url) await t.db.close(); // PGlite: one open handle on a data directory at a time
    const db = await open(prepared);
    try {
      for (let i = 0; i < 3; i++) {
        expect((await db.query<{ x: number }>('SELECT $1::int + 1 AS x', [i])).rows).toEqual([{ x: i + 1 }]);
      }
      const inTx = await db.transaction(
        async (tx) => (await tx.query<{ y: string }>('SELECT $1::text AS y', ['a'])).rows,
      );
      expect(inTx).toEqual([{ y: 'a' }]);
      await db.exec('SELECT 1; SELECT 2;'); // a script: never a prepared statement
      if (t.url) {
        // PostgreSQL: each parameterised text prepared once on the connection (two texts, one run three times).
        expect(await preparedByUs(db)).toBe(prepared ? 3 : 0); // the count query itself is the third
      }
    } finally {
      await db.close();
      if (!t.url) t = await createTestDatabase();
    }
  });

  const onPostgres = it.skipIf(!process.env.TEST_DATABASE_URL); // PGlite has no prepared statements to lose

  onPostgres(
    'a statement the server no longer has (a transaction pooler): answered unnamed, then all unnamed',
    async () => {
      const warnings: string[] = [];
      const db = await openDatabase({
        url: t.url ?? '',
        dataDir,
        poolMax: 1,
        connectTimeoutSeconds: 5,
        statementTimeoutSeconds: 30,
        onWarning: (m) => warnings.push(m),
      });
      try {
        expect((await db.query<{ x: number }>('SELECT $1::int AS x', [1])).rows).toEqual([{ x: 1 }]);
        await db.exec('DEALLOCATE ALL'); // what a server connection handed out by a pooler looks like
        expect((await db.query<{ x: number }>('SELECT $1::int AS x', [2])).rows).toEqual([{ x: 2 }]);
        expect(warnings).toHaveLength(1);
        expect((await db.query<{ x: number }>('SELECT $1::int AS x', [3])).rows).toEqual([{ x: 3 }]);
        expect(await preparedByUs(db)).toBe(0);
      } finally {
        await db.close();
      }
    },
  );

  onPostgres('a migration that changes a prepared statement’s columns: that statement goes unnamed', async () => {
    const db = await open(true);
    try {
      await db.exec('CREATE TABLE prepared_probe (a int); INSERT INTO prepared_probe VALUES (1)');
      const read = () => db.query('SELECT * FROM prepared_probe WHERE a = $1', [1]);
      expect((await read()).rows).toEqual([{ a: 1 }]);
      await db.exec('ALTER TABLE prepared_probe ADD COLUMN b int');
      expect((await read()).rows).toEqual([{ a: 1, b: null }]);
      expect((await read()).rows).toEqual([{ a: 1, b: null }]);
    } finally {
      await db.close();
    }
  });
});
