import type { Database, Queryable } from '../../src/db/index.js';

/**
 * Where a sign-in in flight is caught by a change to its user: 'before the insert' holds the user row FOR UPDATE,
 * which the session insert's foreign key check waits for; 'after the insert' holds it FOR NO KEY UPDATE, which lets
 * the insert through and holds whatever then locks the row FOR SHARE (the check again once the session exists).
 */
export type InFlight = 'before the insert' | 'after the insert';

/**
 * Sends `request` while a transaction holds `userId`'s row, and runs `change` in that transaction once the request
 * waits for a lock, or once it has answered without waiting for one (then the change comes after the answer: a
 * sign-in that should have waited fails its test, rather than hanging it).
 */
export async function whileSignInWaits<T>(
  db: Database,
  userId: string,
  at: InFlight,
  request: () => Promise<T>,
  change: (tx: Queryable) => Promise<void>,
): Promise<T> {
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => {
    locked = resolve;
  });
  let go!: () => void;
  const mayGo = new Promise<void>((resolve) => {
    go = resolve;
  });
  const lock = at === 'before the insert' ? 'FOR UPDATE' : 'FOR NO KEY UPDATE';
  const tx = db.transaction(async (q) => {
    await q.query(`SELECT 1 FROM users WHERE id = $1 ${lock}`, [userId]);
    locked();
    await mayGo;
    await change(q);
  });
  await isLocked;
  let answered = false;
  const pending = request().finally(() => {
    answered = true;
  });
  pending.catch(() => {}); // the caller sees a refusal when it awaits the answer, after the change
  while (!answered) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if ((rows[0]?.n ?? 0) > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  go();
  await tx;
  return pending;
}
