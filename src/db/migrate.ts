import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Database, Queryable } from './database.js';

/** schema.sql at the repository root: the single source of the schema, for psql and for the gateway alike. */
export const SCHEMA_FILE = fileURLToPath(new URL('../../schema.sql', import.meta.url));

/** The advisory lock schema.sql takes: runs (psql, gateways starting together) apply it one at a time. */
const SCHEMA_LOCK_KEY = 727210001;

/**
 * How long the DDL waits for one table lock. While it waits, every query on that table queues behind it: rather than
 * stall the serving gateways behind a long read (pg_dump), the migration rolls back and tries again after a pause.
 */
const LOCK_TIMEOUT = '5s';
/** Pauses before each retry of a migration that met a lock timeout or a deadlock; after the last, the start fails. */
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000];

/**
 * Applies schema.sql unless the database records this very text (its SHA-256) as applied. ALTER TABLE ... IF NOT
 * EXISTS, CREATE INDEX IF NOT EXISTS and CREATE OR REPLACE TRIGGER lock their table even when they change nothing, so
 * a start on a current database runs none of them: it takes no lock on a table the serving gateways use. Of several
 * processes starting at once, the first applies it under the advisory lock and the others then find it current.
 */
export async function migrate(db: Database): Promise<void> {
  // LF whatever the checkout wrote (a Windows one may have CRLF): the BEGIN/COMMIT match and the recorded hash alike.
  const schema = readFileSync(SCHEMA_FILE, 'utf8').replace(/\r\n/g, '\n');
  const version = createHash('sha256').update(schema).digest('hex');
  const body = transactionBody(schema);
  for (let attempt = 0; ; attempt++) {
    try {
      // Unbounded: waiting for another process's migration (or an operator's psql -f schema.sql), and applying a schema
      // change (an index on a large table, a backfill), may rightly take longer than the serving statement_timeout.
      // Neither blocks the serving gateways; what could, the DDL's table locks, is bounded by lock_timeout.
      await db.transaction(
        async (tx) => {
          await tx.query('SET LOCAL statement_timeout = 0');
          await tx.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK_KEY]);
          if ((await appliedVersion(tx)) === version) return;
          // After the advisory lock: waiting for another process's migration blocks no one.
          await tx.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
          await tx.exec(body);
          await tx.exec(`CREATE TABLE IF NOT EXISTS gateway_schema_version (
            singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
            sha256     TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
          )`);
          await tx.query(
            `INSERT INTO gateway_schema_version (sha256) VALUES ($1)
             ON CONFLICT (singleton) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()`,
            [version],
          );
        },
        { unbounded: true },
      );
      return;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code !== '55P03' && code !== '40P01') throw err; // lock_not_available, deadlock_detected
      const delay = RETRY_DELAYS_MS[attempt];
      if (delay === undefined) {
        throw new Error(
          `schema.sql not applied after ${attempt + 1} attempts: ${(err as Error).message} (each waits at most ` +
            `${LOCK_TIMEOUT} for a table lock; a long transaction or dump on the gateway's tables holds them)`,
          { cause: err },
        );
      }
      await sleep(delay);
    }
  }
}

/** The SHA-256 of the schema.sql last applied by a gateway; undefined before the first (to_regclass: no error). */
async function appliedVersion(tx: Queryable): Promise<string | undefined> {
  const { rows } = await tx.query<{ present: boolean }>(
    "SELECT to_regclass('gateway_schema_version') IS NOT NULL AS present",
  );
  if (!rows[0]?.present) return undefined;
  return (await tx.query<{ sha256: string }>('SELECT sha256 FROM gateway_schema_version')).rows[0]?.sha256;
}

/** schema.sql without its own BEGIN; and COMMIT; (kept there for psql): it runs inside the migration's transaction. */
function transactionBody(schema: string): string {
  const match = /(?:^|\n)BEGIN;\n([\s\S]*)\nCOMMIT;\s*$/.exec(schema);
  if (match?.[1] === undefined) throw new Error(`${SCHEMA_FILE} must be one transaction: BEGIN; ... COMMIT;`);
  return match[1];
}
