import type { Queryable } from '../../src/db/index.js';

/**
 * Resolves once `n` statements on `db`'s database wait for a lock: a test holds a table locked in a transaction of its
 * own, then races a request's answer against this (polled outside the locking transaction).
 */
export async function statementsWaitingForALock(db: Queryable, n: number): Promise<string> {
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if ((rows[0]?.n ?? 0) >= n) return `${n} statements waiting for a lock`;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
