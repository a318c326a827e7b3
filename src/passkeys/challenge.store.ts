import { createHash } from 'node:crypto';
import type { Queryable } from '../db/index.js';

export type CeremonyPurpose = 'registration' | 'authentication';

/** What a challenge was issued for, besides its purpose. */
export interface ChallengeBinding {
  /** Registration: the signed-in user. Authentication: the user an `?email=` narrowed to, or null (usernameless). */
  userId: string | null;
}

export type ConsumedChallenge = { status: 'ok'; binding: ChallengeBinding } | { status: 'expired' | 'unknown' };

const PREFIX = 'passkey';

/**
 * Passkey challenges in verification_tokens. The row is found from the challenge the browser signed (it is inside
 * clientDataJSON), not from a cookie, because the design's client fetches options without credentials. The identifier
 * holds the purpose and a SHA-256 of the challenge, so a challenge only opens the ceremony it was issued for; consume
 * is one DELETE ... RETURNING, so of any number of concurrent completions exactly one gets the row.
 */
export function createChallengeStore(db: Queryable, ttlSeconds: number) {
  const identifierOf = (purpose: CeremonyPurpose, challenge: string) =>
    `${PREFIX}:${purpose}:${createHash('sha256').update(challenge).digest('base64url')}`;

  return {
    async issue(purpose: CeremonyPurpose, challenge: string, binding: ChallengeBinding, id: string): Promise<void> {
      // Challenges nobody completed are swept here (index on expires_at), so the table stays small; an hour after
      // expiry, so a late completion still learns its challenge expired rather than that it is unknown.
      await db.query(
        `DELETE FROM verification_tokens WHERE identifier LIKE '${PREFIX}:%' AND expires_at < now() - interval '1 hour'`,
      );
      await db.query(
        `INSERT INTO verification_tokens (id, identifier, token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))`,
        [id, identifierOf(purpose, challenge), JSON.stringify(binding), ttlSeconds],
      );
    },

    async consume(purpose: CeremonyPurpose, challenge: string): Promise<ConsumedChallenge> {
      const { rows } = await db.query<{ token: string; live: boolean }>(
        `DELETE FROM verification_tokens WHERE identifier = $1 RETURNING token, expires_at > now() AS live`,
        [identifierOf(purpose, challenge)],
      );
      const row = rows[0];
      if (!row) return { status: 'unknown' };
      if (!row.live) return { status: 'expired' };
      return { status: 'ok', binding: JSON.parse(row.token) as ChallengeBinding };
    },
  };
}

export type ChallengeStore = ReturnType<typeof createChallengeStore>;
