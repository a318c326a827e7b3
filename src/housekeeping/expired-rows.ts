import type { Queryable } from '../db/index.js';

/** Rows deleted per statement: each DELETE holds its row locks (and fires its NOTIFYs) for one short batch. */
const BATCH = 1000;

/**
 * Tables whose expired rows nothing reads again, and when a row counts as gone for good:
 * - sessions: at expiry. Every lookup refuses an expired session already; its delete fires the sessions_ended
 *   trigger, so caches and sockets of every process drop it, as for a logout.
 * - verification_tokens (email links, reset links, 2FA challenges, passkey challenges, send-slot markers): an hour
 *   after expiry, so a link used just too late is still told apart as expired where a flow does that.
 */
const TABLES = [
  { name: 'sessions', expired: `expires_at < now()` },
  { name: 'verification_tokens', expired: `expires_at < now() - interval '1 hour'` },
] as const;

export type PurgeCounts = Record<(typeof TABLES)[number]['name'], number>;

/**
 * Deletes expired sessions and verification tokens, which otherwise pile up forever (every sign-in leaves a session
 * row; every reset, verification and passkey ceremony a token row). Batched, with SKIP LOCKED so that several gateway
 * processes running it at once each take other rows instead of waiting on each other.
 */
export function createExpiredRowsPurge(db: Queryable): () => Promise<PurgeCounts> {
  return async () => {
    const counts = {} as PurgeCounts;
    for (const { name, expired } of TABLES) {
      let total = 0;
      for (;;) {
        const { rowCount } = await db.query(
          `DELETE FROM ${name} WHERE id IN (
             SELECT id FROM ${name} WHERE ${expired} LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)`,
        );
        total += rowCount;
        if (rowCount < BATCH) break;
      }
      counts[name] = total;
    }
    return counts;
  };
}
