import type { Queryable } from '../db/index.js';
import { hashSecret, newSecret } from './secrets.js';

/**
 * One-time codes that end a browser sign-in (OAuth callback, magic link) without putting a token in a URL: the
 * browser lands on the front end with ?code=..., and the front end trades the code for the session's JWT.
 */
export interface ExchangeCodes {
  /** A fresh code for a session; only its hash is stored. */
  mint(sessionId: string, userId: string): Promise<string>;
  /** The session of a valid, unexpired, unused code, which is used up by this call (concurrent calls: one wins). */
  consume(code: string): Promise<{ sessionId: string; userId: string } | null>;
  /** Deletes expired codes. */
  purgeExpired(): Promise<number>;
}

export function createExchangeCodes(db: Queryable, ttlSeconds: number): ExchangeCodes {
  return {
    async mint(sessionId, userId) {
      const code = newSecret();
      await db.query(
        `INSERT INTO auth_exchange_codes (code_hash, session_id, user_id, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))`,
        [hashSecret(code), sessionId, userId, ttlSeconds],
      );
      return code;
    },
    async consume(code) {
      // DELETE ... RETURNING is the single-use guarantee: of concurrent exchanges, one deletes the row.
      const { rows } = await db.query<{ session_id: string; user_id: string; live: boolean }>(
        `DELETE FROM auth_exchange_codes WHERE code_hash = $1
         RETURNING session_id, user_id, expires_at > now() AS live`,
        [hashSecret(code)],
      );
      const row = rows[0];
      return row?.live ? { sessionId: row.session_id, userId: row.user_id } : null;
    },
    async purgeExpired() {
      const { rowCount } = await db.query('DELETE FROM auth_exchange_codes WHERE expires_at <= now()');
      return rowCount;
    },
  };
}
