import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Database } from './database.js';

/** schema.sql at the repository root: the single source of the schema, for psql and for the gateway alike. */
export const SCHEMA_FILE = fileURLToPath(new URL('../../schema.sql', import.meta.url));

/** Applies schema.sql. Idempotent, and serialised across processes by the advisory lock inside the script. */
export async function migrate(db: Database): Promise<void> {
  await db.exec(readFileSync(SCHEMA_FILE, 'utf8'));
}
