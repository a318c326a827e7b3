import { deleteUser } from '../accounts/accounts.store.js';
import type { Database } from '../db/index.js';
import { AppError } from '../errors/index.js';
import type { PasswordHasher } from '../passwords/index.js';

/** Password change and account deletion: SQL on the design's tables, argon2id through the one hasher. */
export function createAccountStore(db: Database, hasher: PasswordHasher) {
  return {
    /**
     * Checks the current password, stores the new one and ends every other session of the user (the sessions trigger
     * notifies every process: their tokens stop working and their sockets close). INVALID_PASSWORD when the current
     * password is wrong or the account has none.
     */
    async changePassword(input: {
      userId: string;
      keepSessionId: string | null;
      currentPassword: string;
      newPassword: string;
    }): Promise<{ endedSessions: number }> {
      // Before the current password is checked: a refused new one is no attempt at the account.
      if (input.newPassword.length > hasher.maxLength) {
        throw new AppError('VALIDATION_FAILED', 'Password too long', { field: 'newPassword' });
      }
      const { rows } = await db.query<{ id: string; password_hash: string | null }>(
        `SELECT id, password_hash FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential'`,
        [input.userId],
      );
      const credential = rows[0];
      if (!credential?.password_hash || !(await hasher.verify(credential.password_hash, input.currentPassword))) {
        throw new AppError('INVALID_PASSWORD', undefined, { field: 'currentPassword' });
      }
      const hash = await hasher.hash(input.newPassword);
      return db.transaction(async (tx) => {
        // Only if the hash is still the one we checked: two parallel changes with the same current password cannot
        // both win.
        const updated = await tx.query(
          `UPDATE user_credentials SET password_hash = $3, updated_at = now()
            WHERE id = $1 AND password_hash = $2`,
          [credential.id, credential.password_hash, hash],
        );
        if (updated.rowCount === 0) throw new AppError('INVALID_PASSWORD', undefined, { field: 'currentPassword' });
        const ended = await tx.query('DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2', [
          input.userId,
          input.keepSessionId,
        ]);
        return { endedSessions: ended.rowCount };
      });
    },

    /**
     * Deletes the user; sessions, credentials, passkeys, links and 2FA go with it (ON DELETE CASCADE). LAST_ADMIN for
     * the last enabled administrator, who would leave the gateway without one.
     */
    deleteUser: (userId: string): Promise<boolean> => deleteUser(db, userId),

    /** The user's argon2id password hash; null when the account signs in without a password. */
    async passwordHash(userId: string): Promise<string | null> {
      const { rows } = await db.query<{ password_hash: string | null }>(
        `SELECT password_hash FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential'`,
        [userId],
      );
      return rows[0]?.password_hash ?? null;
    },

    async userEmail(userId: string): Promise<{ email: string; name: string } | null> {
      const { rows } = await db.query<{ email: string; name: string }>('SELECT email, name FROM users WHERE id = $1', [
        userId,
      ]);
      return rows[0] ?? null;
    },
  };
}

export type AccountStore = ReturnType<typeof createAccountStore>;
