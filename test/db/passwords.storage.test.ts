import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

const PASSWORD = 'Unmistakable-Pa55word-7f3e';

describe('password storage', () => {
  let t: TestApp;
  let userId: string;
  beforeAll(async () => {
    t = await createTestApp();
    ({ userId } = await registerUser(t.app, { password: PASSWORD }));
    await t.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: 'nobody@example.com', password: PASSWORD },
    });
  });
  afterAll(() => t?.close());

  it('stores an argon2id hash with the configured parameters', async () => {
    const { rows } = await t.db.query<{ password_hash: string }>(
      "SELECT password_hash FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential'",
      [userId],
    );
    const { memory_cost: m, time_cost: tc, parallelism: p } = t.config.auth.argon2;
    expect(rows[0]?.password_hash).toMatch(new RegExp(`^\\$argon2id\\$v=19\\$m=${m},p=${p},t=${tc}\\$`));
  });

  it('the password appears in no column of any table', async () => {
    const { rows: tables } = await t.db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    );
    for (const { table_name } of tables) {
      const { rows } = await t.db.query<{ hit: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${table_name} t WHERE t::text LIKE '%' || $1 || '%') AS hit`,
        [PASSWORD],
      );
      expect(rows[0]?.hit, table_name).toBe(false);
    }
  });

  it('the password appears in no log line (debug level)', () => {
    expect(t.logs.lines.length).toBeGreaterThan(0);
    expect(t.logs.text).not.toContain(PASSWORD);
  });
});
