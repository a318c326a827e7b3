import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

const LISTED = 'listed.boss@example.com';
const postgres = Boolean(process.env.TEST_DATABASE_URL);

/** What keeps a gateway administrable: never no administrator, no lock-out of oneself, no admin rights on an old token. */
describe('admin guards', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { admin: { emails: [LISTED] } } });
  });
  afterAll(() => t?.close());

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const call = (token: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: as(token), ...(payload ? { payload } : {}) });
  /** Exactly these users are the administrators (the tests set the scene through SQL, then act through the API). */
  const onlyAdmins = async (...userIds: string[]) => {
    await t.db.query(`UPDATE users SET role = CASE WHEN id = ANY($1::text[]) THEN 'admin' ELSE 'user' END`, [userIds]);
  };
  const enabledAdmins = async () =>
    Number(
      (await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM users WHERE role = 'admin' AND disabled_at IS NULL`))
        .rows[0]?.n,
    );

  // Regression: only the admin API refused an administrator's own account, so the last one could delete themselves
  // through the user route, and two could demote each other at once (27 of 30 tries left none).
  it('the last enabled administrator cannot delete their own account; with another one left, they can', async () => {
    const a = await registerUser(t.app);
    await onlyAdmins(a.userId);
    const refused = await call(a.token, 'POST', '/auth/account/delete');
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.code).toBe('LAST_ADMIN');
    expect((await t.db.query('SELECT 1 FROM users WHERE id = $1', [a.userId])).rows).toHaveLength(1);
    const audited = await t.db.query(
      `SELECT 1 FROM auth_audit_log WHERE event = 'account.deleted' AND details->>'deletedUserId' = $1`,
      [a.userId],
    );
    expect(audited.rows).toHaveLength(0);

    const b = await registerUser(t.app);
    await onlyAdmins(a.userId, b.userId);
    expect((await call(a.token, 'POST', '/auth/account/delete')).statusCode).toBe(200);
    expect(await enabledAdmins()).toBe(1);
  });

  it('two administrators demoting or disabling each other at once: one wins, an administrator stays', async () => {
    for (let round = 0; round < 8; round++) {
      const [a, b] = await Promise.all([registerUser(t.app), registerUser(t.app)]);
      await onlyAdmins(a.userId, b.userId);
      const [ab, ba] =
        round % 2 === 0
          ? await Promise.all([
              call(a.token, 'PUT', `/admin/users/${b.userId}/role`, { role: 'user' }),
              call(b.token, 'PUT', `/admin/users/${a.userId}/role`, { role: 'user' }),
            ])
          : await Promise.all([
              call(a.token, 'POST', `/admin/users/${b.userId}/disable`),
              call(b.token, 'POST', `/admin/users/${a.userId}/disable`),
            ]);
      expect(await enabledAdmins()).toBe(1);
      const codes = [ab, ba].map((r) => (r.statusCode === 200 ? 'ok' : r.json().error.code)).sort();
      // The loser is no longer an enabled administrator by the time its change is written (ADMIN_REQUIRED, from
      // requireAdmin or from the change's own check), or, disabled, has lost its session before that (INVALID_TOKEN,
      // also when the session went between its authentication and its recent-sign-in check).
      expect(codes[1]).toBe('ok');
      expect(round % 2 === 0 ? ['ADMIN_REQUIRED'] : ['ADMIN_REQUIRED', 'INVALID_TOKEN']).toContain(codes[0]);
    }
  });

  /** What an administrator can change about a user: the row, their license, how many sessions they have. */
  const stateOf = async (userId: string) =>
    (
      await t.db.query(
        `SELECT u.role, u.disabled_at, u.ip_allowlist, l.license_type,
                (SELECT count(*)::int FROM sessions s WHERE s.user_id = u.id) AS sessions
           FROM users u LEFT JOIN user_licenses l ON l.user_id = u.id WHERE u.id = $1`,
        [userId],
      )
    ).rows[0] ?? null;
  /** Runs `sql` in a transaction left open until `commit()`; `pid` is its backend, to see who waits for it. */
  const uncommitted = async (sql: string, params: unknown[]) => {
    let commit!: () => void;
    const committed = new Promise<void>((r) => (commit = r));
    let opened!: (pid: number) => void;
    const pid = new Promise<number>((r) => (opened = r));
    const done = t.db.transaction(async (tx) => {
      await tx.query(sql, params);
      opened((await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0);
      await committed;
    });
    return {
      pid: await pid,
      commit: async () => {
        commit();
        await done;
      },
    };
  };
  /** Waits until `pending` is answered, or waits for a lock that the backend `pid` holds. */
  const answeredOrBlockedBy = async (pending: Promise<unknown>, pid: number) => {
    let answered = false;
    const settle = () => {
      answered = true;
    };
    pending.then(settle, settle);
    await expect
      .poll(
        async () =>
          answered ||
          (await t.db.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid])).rows
            .length > 0,
        { timeout: 5000 },
      )
      .toBe(true);
  };

  // Regression: the role was read once, before the change, so an administrator demoted while their request was under
  // way still promoted, disabled or deleted users (a reviewer's run: the demotion answered 200, then C became admin).
  for (const [method, path, payload] of [
    ['PUT', '/role', { role: 'admin' }],
    ['POST', '/disable'],
    ['DELETE', ''],
    ['PUT', '/license', { type: 'pro' }],
    ['POST', '/revoke-sessions'],
    ['PUT', '/ip-allowlist', { cidrs: ['10.0.0.0/8'] }],
  ] as const) {
    it.runIf(postgres)(
      `${method} /admin/users/:id${path} by an administrator demoted meanwhile is refused`,
      async () => {
        const [a, c] = await Promise.all([registerUser(t.app), registerUser(t.app)]);
        await onlyAdmins(a.userId);
        const before = await stateOf(c.userId);
        // Another administrator's demotion of A, written but not committed: A's request passes the role check.
        const demotion = await uncommitted(`UPDATE users SET role = 'user' WHERE id = $1`, [a.userId]);
        const pending = call(a.token, method, `/admin/users/${c.userId}${path}`, payload);
        await answeredOrBlockedBy(pending, demotion.pid);
        await demotion.commit();
        const res = await pending;
        expect([res.statusCode, res.json().error?.code]).toEqual([403, 'ADMIN_REQUIRED']);
        expect(await stateOf(c.userId)).toEqual(before);
        const { rows } = await t.db.query<{ details: object }>(
          `SELECT details FROM auth_audit_log WHERE event = 'admin.action' AND user_id = $1`,
          [a.userId],
        );
        expect(rows.map((r) => r.details)).toEqual([
          expect.objectContaining({ target: c.userId, outcome: 'refused', reason: 'ADMIN_REQUIRED' }),
        ]);
      },
    );
  }

  it('administrators changing each other, or themselves twice, at once all succeed (no deadlock)', async () => {
    for (let round = 0; round < 8; round++) {
      const [a, b] = await Promise.all([registerUser(t.app), registerUser(t.app)]);
      await onlyAdmins(a.userId, b.userId);
      // Each change holds its caller's row and writes another's: taken in any order, these would wait for each other.
      const results = await Promise.all([
        call(a.token, 'PUT', `/admin/users/${b.userId}/ip-allowlist`, { cidrs: [] }),
        call(b.token, 'PUT', `/admin/users/${a.userId}/ip-allowlist`, { cidrs: [] }),
        call(a.token, 'POST', `/admin/users/${b.userId}/enable`),
        call(b.token, 'POST', `/admin/users/${a.userId}/enable`),
        call(a.token, 'PUT', `/admin/users/${a.userId}/ip-allowlist`, { cidrs: ['127.0.0.1/32'] }),
        call(a.token, 'PUT', `/admin/users/${a.userId}/ip-allowlist`, { cidrs: [] }),
      ]);
      expect(results.map((r) => r.statusCode)).toEqual([200, 200, 200, 200, 200, 200]);
    }
  });

  it('an address in admin.emails cannot be demoted (the next sign-in would make it an admin again)', async () => {
    const boss = await registerUser(t.app);
    const listed = await registerUser(t.app, { email: LISTED });
    await t.db.query('UPDATE users SET email_verified = true WHERE id = $1', [listed.userId]);
    await onlyAdmins(boss.userId, listed.userId);
    const res = await call(boss.token, 'PUT', `/admin/users/${listed.userId}/role`, { role: 'user' });
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('ADMIN_BY_CONFIG');
    const { rows } = await t.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [listed.userId]);
    expect(rows[0]?.role).toBe('admin');
  });

  it('an administrator cannot lock themselves out with their own IP allow list', async () => {
    const a = await registerUser(t.app);
    await onlyAdmins(a.userId);
    const res = await call(a.token, 'PUT', `/admin/users/${a.userId}/ip-allowlist`, { cidrs: ['203.0.113.0/24'] });
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('IP_ALLOWLIST_LOCKOUT');
    expect((await call(a.token, 'GET', '/admin/users')).statusCode).toBe(200);
    const ok = await call(a.token, 'PUT', `/admin/users/${a.userId}/ip-allowlist`, { cidrs: ['127.0.0.1/32'] });
    expect(ok.statusCode).toBe(200);
  });

  it('changes need a recent sign-in (a stolen old admin token reads, but grants nothing); non-admins learn nothing', async () => {
    const [a, user] = await Promise.all([registerUser(t.app), registerUser(t.app)]);
    await onlyAdmins(a.userId);
    await t.db.query(`UPDATE sessions SET created_at = now() - interval '3 days' WHERE user_id = ANY($1::text[])`, [
      [a.userId, user.userId],
    ]);
    expect((await call(a.token, 'GET', `/admin/users/${user.userId}`)).statusCode).toBe(200);
    for (const [method, url, payload] of [
      ['PUT', `/admin/users/${user.userId}/role`, { role: 'admin' }],
      ['PUT', `/admin/users/${user.userId}/license`, { type: 'free' }],
      ['POST', `/admin/users/${user.userId}/revoke-sessions`],
      ['POST', `/admin/users/${user.userId}/disable`],
      ['PUT', `/admin/users/${user.userId}/ip-allowlist`, { cidrs: [] }],
      ['DELETE', `/admin/users/${user.userId}`],
    ] as const) {
      const res = await call(a.token, method, url, payload);
      expect([url, res.statusCode, res.json().error?.code]).toEqual([url, 403, 'REAUTH_REQUIRED']);
      const other = await call(user.token, method, url, payload);
      expect(other.json().error.code).toBe('ADMIN_REQUIRED');
    }
    const { rows } = await t.db.query<{ role: string }>('SELECT role FROM users WHERE id = $1', [user.userId]);
    expect(rows[0]?.role).toBe('user');
  });
});
