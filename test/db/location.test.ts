import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/index.js';

const SECRET = 'Location-Secret-4242';

/** db.location of a PostgreSQL URL; nothing connects (the pool is lazy). */
async function locationOf(url: string): Promise<string> {
  const db = await openDatabase({
    url,
    dataDir: '/tmp',
    poolMax: 1,
    connectTimeoutSeconds: 1,
    statementTimeoutSeconds: 1,
  });
  try {
    return db.location;
  } finally {
    await db.close();
  }
}

// Regression: libpq URLs may carry the password in the query (?password=), and db.location, logged at start and printed
// by `migrate`, kept it.
describe('db.location keeps no secret of DATABASE_URL', () => {
  it.each([
    ['the userinfo password', `postgres://u:${SECRET}@db.example:5432/app`],
    ['?password=', `postgres://u@db.example:5432/app?password=${SECRET}`],
    ['&sslpassword=', `postgres://u@db.example/app?sslmode=require&sslpassword=${SECRET}`],
    ['an unknown parameter', `postgres://u@db.example/app?x_token=${SECRET}`],
    ['a repeated parameter', `postgres://u@db.example/app?password=a&password=${SECRET}`],
    ['the fragment', `postgres://u@db.example/app#${SECRET}`],
    ['an unix-socket URL', `postgres:///app?host=/var/run/postgresql&password=${SECRET}`],
    ['a string that does not parse', `postgres://u:${SECRET}@db.example:99999/app`],
  ])('masks %s', async (_, url) => {
    expect(await locationOf(url)).not.toContain(SECRET);
  });

  it('keeps where the database is and the harmless parameters', async () => {
    expect(
      await locationOf(
        `postgres://u:${SECRET}@db.example:5432/app?sslmode=require&application_name=gw&password=${SECRET}`,
      ),
    ).toBe('postgres://u:***@db.example:5432/app?sslmode=require&application_name=gw&password=***');
  });

  it('does not echo a string that does not parse', async () => {
    expect(await locationOf(`not a url ${SECRET}`)).toBe('(unparseable DATABASE_URL)');
  });
});
