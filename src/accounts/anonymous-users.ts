import { ANONYMOUS_EMAIL_DOMAIN, generateId } from '../auth/index.js';
import { isUniqueViolation, type Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';
import type { PasswordHasher } from '../passwords/index.js';

// An upgrade that waits for its address to be proven (auth.require_email_verification): one row per anonymous user in
// verification_tokens, the value a JSON PendingUpgrade. The password is stored as its argon2id hash, as it will be in
// user_credentials.
const PENDING_PREFIX = 'anonymous-upgrade:';

// The address Better Auth's anonymous plugin gives an anonymous user, `temp-<id>@<domain>`, as a LIKE pattern (neither
// part holds a LIKE wildcard).
const PLACEHOLDER_EMAIL = `temp-%@${ANONYMOUS_EMAIL_DOMAIN}`;

// Who may still take the upgrade: a user on the placeholder address without a password. Not users.is_anonymous: a
// passkey clears that (the user can sign in again, so the cleanup must keep it) but gives no address or password, and
// an upgrade asked for before the passkey must still complete by its link. Once an upgrade is made the address is no
// longer the placeholder, so of two upgrades at once the second finds the row changed and makes none.
const UPGRADABLE = `users.email LIKE '${PLACEHOLDER_EMAIL}'
  AND NOT EXISTS (SELECT 1 FROM user_credentials c WHERE c.user_id = users.id AND c.provider_id = 'credential')`;

interface PendingUpgrade {
  email: string;
  name: string;
  passwordHash: string;
}

export interface AnonymousUsers {
  isAnonymous(userId: string): Promise<boolean>;
  /**
   * Whether the user may still be given an email and a password in place (upgradeWithPassword, requestUpgrade): an
   * anonymous user, or one a passkey made permanent, who has neither yet.
   */
  mayUpgrade(userId: string): Promise<boolean>;
  /**
   * Turns an anonymous user into a registered one in place: the same id (so its sessions, links, license, passkeys and
   * data stay), now with an email and a password. NOT_ANONYMOUS if it got an address or password meanwhile (or never
   * could: see mayUpgrade); EMAIL_TAKEN if the email is taken.
   */
  upgradeWithPassword(userId: string, input: { email: string; password: string; name: string }): Promise<void>;
  /**
   * The upgrade when addresses must be proven: nothing about the user changes yet, whether or not the address has an
   * account (the caller answers the same either way and emails the address). The upgrade is made by the emailed link
   * (completeUpgrade); a newer request replaces this one, so only the link for the latest address can complete it.
   * NOT_ANONYMOUS if the user may not upgrade (mayUpgrade).
   */
  requestUpgrade(userId: string, input: { email: string; password: string; name: string }): Promise<void>;
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

    async mayUpgrade(userId) {
      const { rows } = await db.query(`SELECT 1 FROM users WHERE id = $1 AND ${UPGRADABLE}`, [userId]);
      return rows.length > 0;
    },

    async upgradeWithPassword(userId, { email, password, name }) {
      const passwordHash = await hasher.hash(password);
      const upgraded = await db.transaction((tx) => applyUpgrade(tx, userId, { email, name, passwordHash }, false));
      if (!upgraded) throw new AppError('NOT_ANONYMOUS');
    },

    async requestUpgrade(userId, { email, password, name }) {
      // The same argon2 computation a sign-up makes, and no look-up of the address: the request costs the same
      // whether or not the address has an account.
      const pending: PendingUpgrade = { email, name, passwordHash: await hasher.hash(password) };
      // Expires with the anonymous user at the latest (anonymous.max_age); the link's own expiry is shorter.
      const { rowCount } = await db.query(
        `WITH replaced AS (DELETE FROM verification_tokens WHERE identifier = $2)
         INSERT INTO verification_tokens (id, identifier, token, expires_at)
         SELECT $3, $2, $4, now() + make_interval(secs => $5) FROM users WHERE id = $1 AND ${UPGRADABLE}`,
        [userId, PENDING_PREFIX + userId, generateId('verification'), JSON.stringify(pending), maxAgeSeconds],
      );
      if (rowCount === 0) throw new AppError('NOT_ANONYMOUS');
    },

    async cleanup() {
      const { rowCount } = await db.query(
        `DELETE FROM users WHERE is_anonymous AND created_at < now() - make_interval(secs => $1)`,
        [maxAgeSeconds],
      );
      await db.query(`DELETE FROM verification_tokens WHERE starts_with(identifier, $1) AND expires_at < now()`, [
        PENDING_PREFIX,
      ]);
      return rowCount;
    },
  };
}

/**
 * Completes the anonymous user's pending upgrade to `email`, inside the caller's transaction, when a link sent to that
 * address has just been followed: the address is then verified. False when the user has no pending upgrade to this
 * address (another address was asked for since) or may no longer upgrade (it got an address or a password).
 * EMAIL_TAKEN if the address got an account in the meantime.
 */
export async function completeUpgrade(tx: Queryable, userId: string, email: string): Promise<boolean> {
  const { rows } = await tx.query<{ token: string }>(
    `SELECT token FROM verification_tokens WHERE identifier = $1 AND expires_at > now() FOR UPDATE`,
    [PENDING_PREFIX + userId],
  );
  const pending = rows.map((r) => JSON.parse(r.token) as PendingUpgrade).find((p) => p.email === email);
  if (!pending) return false;
  if (!(await applyUpgrade(tx, userId, pending, true))) return false;
  await tx.query('DELETE FROM verification_tokens WHERE identifier = $1', [PENDING_PREFIX + userId]);
  return true;
}

/** The upgrade itself: email, name and password on the user's row. False if the user may not upgrade (UPGRADABLE). */
async function applyUpgrade(tx: Queryable, userId: string, upgrade: PendingUpgrade, verified: boolean) {
  try {
    const { rowCount } = await tx.query(
      `UPDATE users SET email = $2, email_verified = $4, is_anonymous = FALSE, updated_at = now(),
              name = CASE WHEN $3 <> '' THEN $3 ELSE name END
        WHERE id = $1 AND ${UPGRADABLE}`,
      [userId, upgrade.email, upgrade.name, verified],
    );
    if (rowCount === 0) return false;
    await tx.query(
      `INSERT INTO user_credentials (id, user_id, account_id, provider_id, password_hash)
       VALUES ($1, $2, $2, 'credential', $3)`,
      [generateId('account'), userId, upgrade.passwordHash],
    );
    return true;
  } catch (err) {
    if (isUniqueViolation(err)) throw new AppError('EMAIL_TAKEN', undefined, { field: 'email' }, { cause: err });
    throw err;
  }
}
