import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// Regression (review A): the migration strips schema.sql's own BEGIN;/COMMIT; with a pattern that knew only LF line
// ends, so on a Windows checkout (core.autocrlf) every start threw "schema.sql must be one transaction". .gitattributes
// now asks for LF, and the migration reads CRLF as LF (the same recorded hash either way).
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((path: unknown, ...rest: unknown[]) => {
    const text = (fs.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
    return typeof text === 'string' && String(path).endsWith('schema.sql') && process.env.SCHEMA_CRLF === '1'
      ? text.replace(/\r?\n/g, '\r\n')
      : text;
  }) as typeof fs.readFileSync;
  return { ...fs, default: { ...fs, readFileSync }, readFileSync };
});

const { migrate } = await import('../../src/db/index.js');
const { createTestDatabase } = await import('../helpers/test-app.js');

describe('schema.sql checked out with CRLF line ends (a Windows checkout)', () => {
  let t: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    t = await createTestDatabase(); // migrated with the file as it is (LF)
  });
  afterAll(() => t?.drop());

  it('is applied at start as psql applies it', async () => {
    // Force a re-apply, as after an upgrade that changed schema.sql.
    await t.db.query("UPDATE gateway_schema_version SET sha256 = 'an older schema.sql'");
    process.env.SCHEMA_CRLF = '1';
    try {
      await expect(migrate(t.db)).resolves.toBeUndefined();
      const { rows } = await t.db.query<{ sha256: string }>('SELECT sha256 FROM gateway_schema_version');
      expect(rows[0]?.sha256).not.toBe('an older schema.sql');
    } finally {
      delete process.env.SCHEMA_CRLF;
    }
  });
});
