import { BASE_ERROR_CODES } from 'better-auth';
import { APIError } from 'better-auth/api';
import type { Database } from '../db/index.js';

/** An account's password as a sign-in read it: its user and credential hash. */
interface Password {
  userId: string;
  hash: string | null;
}

/** What a sign-in that answered success issued: a session (its token), or a 2FA challenge (no session: null). */
export interface Issued {
  sessionToken: string | null;
}

/**
 * Better Auth's password sign-in (its POST /sign-in/email, and auth.api.signInEmail for accounts with 2FA) reads the
 * hash, verifies it (tens of ms, seconds behind a long hash queue), then writes a session or a 2FA challenge without
 * reading the hash again. A password change or reset committing meanwhile ends the user's sessions and voids their
 * pending proofs (schema.sql, gateway_void_password_proofs) before those rows exist, so they outlived it. Our own
 * sign-in writes its session only while the hash is the one verified (password-sign-in.ts); this holds Better Auth's
 * to the same: `signIn` runs between two reads of the account's hash, and when the second differs, what it issued is
 * undone and the sign-in fails as a wrong password does (Better Auth's own refusal, an APIError).
 * Safe in both orders: a change that commits before the second read is seen by it (FOR SHARE waits for one whose
 * UPDATE or DELETE of the credential is in flight, then reads what it wrote); one that starts later deletes the
 * session and the challenge itself, as they were committed before that read.
 */
export function createPasswordRace(db: Database) {
  async function passwordOf(email: string, lock: boolean): Promise<Password | null> {
    const { rows } = await db.query<{ user_id: string; password_hash: string | null }>(
      `SELECT u.id AS user_id, c.password_hash FROM users u
         JOIN user_credentials c ON c.user_id = u.id AND c.provider_id = 'credential'
        WHERE lower(u.email) = lower($1)${lock ? ' FOR SHARE OF c' : ''}`,
      [email],
    );
    const row = rows[0];
    return row ? { userId: row.user_id, hash: row.password_hash } : null;
  }

  /**
   * Runs `signIn` for the account at `email`; `issued` says what its answer issued (null: it issued nothing, a
   * refusal). Throws Better Auth's wrong-password APIError when the password changed meanwhile.
   */
  return async function whilePasswordHolds<T>(
    email: string,
    signIn: () => Promise<T>,
    issued: (answer: T) => Promise<Issued | null>,
  ): Promise<T> {
    const before = await passwordOf(email, false);
    const answer = await signIn();
    const made = await issued(answer);
    if (!made) return answer;
    const after = await passwordOf(email, true);
    if (before?.userId === after?.userId && before?.hash === after?.hash) return answer;
    // The session by its token (not the user's newest: another sign-in may have made that), and every pending proof
    // of the user as the password trigger voids them (the 2FA challenge among them: its value is the user id).
    const users = [before?.userId, after?.userId].filter((id) => id !== undefined);
    await db.query(
      `WITH session AS (DELETE FROM sessions WHERE token = $1)
       DELETE FROM verification_tokens WHERE token = ANY($2::text[])`,
      [made.sessionToken, users],
    );
    throw APIError.from('UNAUTHORIZED', BASE_ERROR_CODES.INVALID_EMAIL_OR_PASSWORD);
  };
}
