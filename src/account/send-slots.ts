import { createHash } from 'node:crypto';
import { generateId } from '../auth/index.js';
import type { Database, Queryable } from '../db/index.js';
import { afterAnswer, withSends } from './deferred.js';

/**
 * At most one account email of a kind per address per interval (a few, for a kind with a burst), so that requests from
 * many clients cannot flood one inbox. The limit holds for every address, whether it has an account or not: one that
 * only known addresses hit would tell them apart. An address's slot is a marker row in verification_tokens, identifier
 * `<kind>-sent:<SHA-256 of the address>` (the address itself is not stored), that expires when the slot frees up.
 */

/** The slot is the caller's (`marker`: the id of its row), or it frees up in `wait` seconds. */
export type SendSlot = { marker: string } | { wait: number };

/** The kinds of email limited this way; each has its own slot per address. */
export type SendKind = 'email-verification' | 'password-reset' | 'security-notice';

/**
 * Takes a slot of `email` (normalised) inside `tx`, for `intervalSeconds`; it is the caller's once `tx` commits. The
 * address has `burst` slots: at most that many emails of the kind in any interval.
 */
export async function claimSendSlot(
  tx: Queryable,
  kind: SendKind,
  email: string,
  intervalSeconds: number,
  burst = 1,
): Promise<SendSlot> {
  const marker = `${kind}-sent:${createHash('sha256').update(email).digest('hex')}`;
  // Serialises sends to one address across connections and processes; the marker row is the limit.
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [marker]);
  const { rows } = await tx.query<{ taken: number; wait: number }>(
    `SELECT count(*)::int AS taken, ceil(extract(epoch FROM min(expires_at) - now()))::int AS wait
         FROM verification_tokens WHERE identifier = $1 AND expires_at > now()`,
    [marker],
  );
  const live = rows[0];
  if (live && live.taken >= burst) return { wait: live.wait };
  const id = generateId('verification');
  await tx.query('DELETE FROM verification_tokens WHERE identifier = $1 AND expires_at <= now()', [marker]);
  await tx.query(
    `INSERT INTO verification_tokens (id, identifier, token, expires_at)
       VALUES ($1, $2, '', now() + make_interval(secs => $3))`,
    [id, marker, intervalSeconds],
  );
  return { marker: id };
}

/**
 * Gives a slot back, when what it was taken for failed: the address may ask again at once. Best effort: a failure
 * here has the cause of the failure the caller reports (the database) and adds nothing to it.
 */
export async function freeSendSlot(db: Queryable, marker: string): Promise<void> {
  await db.query('DELETE FROM verification_tokens WHERE id = $1', [marker]).catch(() => undefined);
}

export interface SendLimit {
  /**
   * Runs `send` if the address's slot is free, and takes it; does nothing while the slot is taken. Whether `send` ran.
   * `send` ends when its email has gone out: what it sends with sendDeferred (Better Auth's reset hook does) is waited
   * for. A failure of `send` or of that email frees the slot and is thrown: the address may ask again at once. After
   * the answer only (it takes the SMTP time); shutdown waits for it (afterAnswer).
   */
  run(email: string, send: () => Promise<unknown>): Promise<boolean>;
}

/** One email of `kind` per address per `intervalSeconds` (`burst` of them), on `db`. */
export function createSendLimit(db: Database, kind: SendKind, intervalSeconds: number, burst = 1): SendLimit {
  const run = async (email: string, send: () => Promise<unknown>) => {
    const slot = await db.transaction((tx) => claimSendSlot(tx, kind, email, intervalSeconds, burst));
    if ('wait' in slot) return false;
    try {
      await withSends(send);
    } catch (err) {
      await freeSendSlot(db, slot.marker);
      throw err;
    }
    return true;
  };
  return { run: (email, send) => afterAnswer(run(email, send)) };
}
