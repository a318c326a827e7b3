import type { Database, Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';

/** Serialises every change that can take the last administrator away, in every gateway process and the CLI. */
const LAST_ADMIN_LOCK = 727210010;

/**
 * Runs `change` (which may take the admin role from `userId`: a demotion, disabling, deletion) in a transaction,
 * unless it would leave no enabled administrator: then LAST_ADMIN, and nothing changes. Two administrators demoting
 * each other at once cannot both win: the count is read under one lock, after the previous change committed.
 * With an `actor` (the administrator making the change), their role is checked under the same lock (holdAdmin).
 */
export async function keepingAnAdmin<T>(
  db: Database,
  userId: string,
  change: (tx: Queryable) => Promise<T>,
  actor?: string,
): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LAST_ADMIN_LOCK]);
    if (actor !== undefined) await holdAdmin(tx, actor, userId);
    const { rows } = await tx.query<{ target: boolean | null; others: string | number }>(
      `SELECT bool_or(id = $1) AS target, count(*) FILTER (WHERE id <> $1) AS others
         FROM users WHERE role = 'admin' AND disabled_at IS NULL`,
      [userId],
    );
    if (rows[0]?.target && Number(rows[0].others) === 0) throw new AppError('LAST_ADMIN');
    return change(tx);
  });
}

/**
 * Runs an administrator's `change` in a transaction that first re-reads their role (holdAdmin): one checked before
 * the request's work began could have been taken away since. `target` is the user whose row the change writes (null
 * when it writes none). Without an `actor` (an operator at the shell) the change runs as it is.
 */
export async function asAdmin<T>(
  db: Database,
  actor: string | undefined,
  target: string | null,
  change: (tx: Queryable) => Promise<T>,
): Promise<T> {
  if (actor === undefined) return change(db);
  return db.transaction(async (tx) => {
    await holdAdmin(tx, actor, target);
    return change(tx);
  });
}

/**
 * ADMIN_REQUIRED unless `actor` is an enabled administrator, their row held until the transaction ends (FOR SHARE): a
 * demotion or disabling of theirs that committed first is seen, one that comes later waits for this change. The
 * target's row is locked too (FOR UPDATE, as the change will), both in id order, so two administrators changing
 * each other wait instead of deadlocking; an actor who is the target takes their row FOR UPDATE at once, since two
 * changes both holding it FOR SHARE and both waiting to write it would deadlock.
 */
async function holdAdmin(tx: Queryable, actor: string, target: string | null): Promise<void> {
  for (const id of [...new Set([actor, target ?? actor])].sort()) {
    const { rows } = await tx.query<{ role: string; disabled_at: unknown }>(
      `SELECT role, disabled_at FROM users WHERE id = $1 FOR ${id === target ? 'UPDATE' : 'SHARE'}`,
      [id],
    );
    if (id === actor && !(rows[0]?.role === 'admin' && rows[0].disabled_at === null)) {
      throw new AppError('ADMIN_REQUIRED');
    }
  }
}
