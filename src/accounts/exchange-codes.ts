import type { Queryable } from '../db/index.js';
import { verifierAnswers } from './code-challenge.js';
import { hashSecret, newSecret } from './secrets.js';

/**
 * One-time codes that end a browser sign-in (OAuth callback, magic link) without putting a token in a URL: the
 * browser lands on the front end with ?code=..., and the front end trades the code for the session's JWT.
 */
export interface ExchangeCodes {
  /**
   * A fresh code for a session, bound to `challenge` when the flow's front end gave one; only its hash is stored. Null
   * when the session is gone (revoked, or its account deleted, since the sign-in made it).
   */
  mint(sessionId: string, userId: string, challenge?: string | null): Promise<string | null>;
  /**
   * The session of a valid, unexpired, unused code whose binding `verifier` answers (see code-challenge.ts). The code
   * is used up by this call whatever the answer (concurrent calls: one wins), so a verifier cannot be guessed at.
   */
  consume(code: string, verifier?: string): Promise<{ sessionId: string; userId: string } | null>;
  /** Deletes expired codes. */
  purgeExpired(): Promise<number>;
}

export function createExchangeCodes(db: Queryable, ttlSeconds: number): ExchangeCodes {
  return {
    async mint(sessionId, userId, challenge = null) {
      const code = newSecret();
      // Only for a session that is still there: FOR KEY SHARE waits for a deletion in flight (a revocation, the
      // account's deletion) and then sees it, where the foreign keys would fail the insert (23503).
      const { rowCount } = await db.query(
        `INSERT INTO auth_exchange_codes (code_hash, session_id, user_id, expires_at, code_challenge)
         SELECT $1, s.id, s.user_id, now() + make_interval(secs => $4), $5
           FROM sessions s WHERE s.id = $2 AND s.user_id = $3
            FOR KEY SHARE`,
        [hashSecret(code), sessionId, userId, ttlSeconds, challenge],
      );
      return rowCount === 0 ? null : code;
    },
    async consume(code, verifier) {
      // DELETE ... RETURNING is the single-use guarantee: of concurrent exchanges, one deletes the row.
      const { rows } = await db.query<{
        session_id: string;
        user_id: string;
        live: boolean;
        code_challenge: string | null;
      }>(
        `DELETE FROM auth_exchange_codes WHERE code_hash = $1
         RETURNING session_id, user_id, expires_at > now() AS live, code_challenge`,
        [hashSecret(code)],
      );
      const row = rows[0];
      if (!row?.live || !verifierAnswers(row.code_challenge, verifier)) return null;
      return { sessionId: row.session_id, userId: row.user_id };
    },
    async purgeExpired() {
      const { rowCount } = await db.query('DELETE FROM auth_exchange_codes WHERE expires_at <= now()');
      return rowCount;
    },
  };
}
