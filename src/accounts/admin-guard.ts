import type { Database, Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';

/** Serialises every change that can take the last administrator away, in every gateway process and the CLI. */
const LAST_ADMIN_LOCK = 727210010;

/**
 * Runs `change` (which may take the admin role from `userId`: a demotion, disabling, deletion) in a transaction,
 * unless it would leave no enabled administrator: then LAST_ADMIN, and nothing changes. Two administrators demoting
 * each other at once cannot both win: the count is read under one lock, after the previous change committed.
 */
export async function keepingAnAdmin<T>(
  db: Database,
  userId: string,
  change: (tx: Queryable) => Promise<T>,
): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LAST_ADMIN_LOCK]);
    const { rows } = await tx.query<{ target: boolean | null; others: string | number }>(
      `SELECT bool_or(id = $1) AS target, count(*) FILTER (WHERE id <> $1) AS others
         FROM users WHERE role = 'admin' AND disabled_at IS NULL`,
      [userId],
    );
    if (rows[0]?.target && Number(rows[0].others) === 0) throw new AppError('LAST_ADMIN');
    return change(tx);
  });
}
