import { generateId } from '../auth/index.js';
import { isUniqueViolation, type Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';
import type { PasswordHasher } from '../passwords/index.js';

export interface AnonymousUsers {
  isAnonymous(userId: string): Promise<boolean>;
  /**
   * Turns an anonymous user into a registered one in place: the same id (so its sessions, links, license and data
   * stay), now with an email and a password. NOT_ANONYMOUS if it was registered meanwhile; EMAIL_TAKEN if the email is.
   */
  upgradeWithPassword(userId: string, input: { email: string; password: string; name: string }): Promise<void>;
  /** Deletes anonymous users older than max_age (their sessions, links and license go with them). */
  cleanup(): Promise<number>;
}

export function createAnonymousUsers(
  db: Queryable & { transaction: <T>(fn: (tx: Queryable) => Promise<T>) => Promise<T> },
  hasher: PasswordHasher,
  maxAgeSeconds: number,
): AnonymousUsers {
  return {
    async isAnonymous(userId) {
      const { rows } = await db.query<{ is_anonymous: boolean }>('SELECT is_anonymous FROM users WHERE id = $1', [
        userId,
      ]);
      return rows[0]?.is_anonymous === true;
    },

    async upgradeWithPassword(userId, { email, password, name }) {
      const passwordHash = await hasher.hash(password);
      try {
        await db.transaction(async (tx) => {
          const { rowCount } = await tx.query(
            `UPDATE users SET email = $2, email_verified = FALSE, is_anonymous = FALSE, updated_at = now(),
                    name = CASE WHEN $3 <> '' THEN $3 ELSE name END
              WHERE id = $1 AND is_anonymous`,
            [userId, email, name],
          );
          if (rowCount === 0) throw new AppError('NOT_ANONYMOUS');
          await tx.query(
            `INSERT INTO user_credentials (id, user_id, account_id, provider_id, password_hash)
             VALUES ($1, $2, $2, 'credential', $3)`,
            [generateId('account'), userId, passwordHash],
          );
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('EMAIL_TAKEN', undefined, { field: 'email' }, { cause: err });
        throw err;
      }
    },

    async cleanup() {
      const { rowCount } = await db.query(
        `DELETE FROM users WHERE is_anonymous AND created_at < now() - make_interval(secs => $1)`,
        [maxAgeSeconds],
      );
      return rowCount;
    },
  };
}
