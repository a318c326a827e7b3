import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirError, dataDirError } from '../../src/db/data-dir-lock.js';
import { openDatabase } from '../../src/db/index.js';

// Regression: a data directory that could not be used failed with a raw stack trace (mkdir: ENOTDIR) or, from PGlite
// (Emscripten's ErrnoError, not an Error), as "fatal: [object Object]"; now a DataDirError names the path and errno.

const root = mkdtempSync(join(tmpdir(), 'gw-datadir-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const options = (dataDir: string) => ({
  url: '',
  dataDir,
  poolMax: 1,
  connectTimeoutSeconds: 5,
  statementTimeoutSeconds: 30,
});

describe('a data directory that cannot be used', () => {
  it('below a regular file: a DataDirError naming the path and ENOTDIR, a setting to change', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    const dataDir = join(file, 'data');
    const err = await openDatabase(options(dataDir)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DataDirError);
    expect(err).toMatchObject({
      code: 'DATA_DIR_UNUSABLE',
      errno: 'ENOTDIR',
      setting: true,
      message: `cannot create/write ${join(dataDir, 'pgdata')} (ENOTDIR)`,
    });
    expect((err as Error).stack).toBe((err as Error).message); // one line where it is printed
  });

  it("PGlite's Emscripten ErrnoError is named by its errno; a full disk is not a setting", () => {
    class ErrnoError {
      name = 'ErrnoError';
      constructor(readonly errno: number) {}
    }
    const full = dataDirError('/data/pgdata', new ErrnoError(51));
    expect(full).toBeInstanceOf(DataDirError);
    expect(full).toMatchObject({
      errno: 'ENOSPC',
      setting: false,
      message: 'cannot create/write /data/pgdata (ENOSPC: no space left on device)',
    });
    expect(dataDirError('/d', new ErrnoError(2))).toMatchObject({ errno: 'EACCES', setting: true });
    expect(dataDirError('/d', new ErrnoError(69))).toMatchObject({ errno: 'EROFS', setting: true });
    expect(dataDirError('/d', new ErrnoError(7))).toMatchObject({ errno: 'errno 7', setting: false });
    const other = new Error('database files are incompatible');
    expect(dataDirError('/d', other)).toBe(other); // not a file-system error: unchanged
  });
});
