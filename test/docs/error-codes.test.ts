import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../../src/errors/index.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** Is `code` documented with `status`: a row of an error table, or "`CODE` (status" in a section's prose? */
function documented(code: string, status: number): boolean {
  const row = new RegExp(`^\\| \`${code}\`\\s*\\| ${status}\\s`, 'm');
  const prose = new RegExp(`\`${code}\` \\(${status}[,)]`);
  return row.test(README) || prose.test(README);
}

describe('the README documents the error catalogue', () => {
  it('names every code with its HTTP status', () => {
    const missing = Object.entries(ERROR_CATALOGUE)
      .filter(([code, { status }]) => !documented(code, status))
      .map(([code, { status }]) => `${code} (${status})`);
    expect(missing).toEqual([]);
  });
});
