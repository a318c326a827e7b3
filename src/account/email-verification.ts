import { createHash, randomBytes } from 'node:crypto';
import { generateId } from '../auth/index.js';
import type { Database } from '../db/index.js';
import { type Mailer, verificationEmail } from '../email/index.js';
import { AppError } from '../errors/index.js';
import { sendDeferred } from './deferred.js';

/**
 * Email verification with our own links: Better Auth's are stateless JWTs that verify as often as they are opened until
 * they expire; ours are single-use. A link carries 256 random bits; verification_tokens keeps only their SHA-256
 * (identifier `email-verification:<hex>`, value = user id) and consuming is one DELETE ... RETURNING, so a link works
 * once even when opened twice at the same moment.
 */

const TOKEN_PREFIX = 'email-verification:';
// Marks "a verification email went to this address recently" (per address, known or not: no enumeration).
const SENT_PREFIX = 'email-verification-sent:';

export interface EmailVerificationOptions {
  db: Database;
  mailer: Mailer;
  log: { error(obj: object, msg: string): void };
  /** server.base_url: links are built on it. */
  baseUrl: string;
  appName: string;
  ttlSeconds: number;
  resendIntervalSeconds: number;
}

export interface EmailVerification {
  /** Issues a new link for this user (older ones stop working) and sends it after the request. */
  issue(user: { id: string; email: string; name: string }): Promise<void>;
  /**
   * As issue(), but silently skipped when the address got a link less than resend_interval ago: Better Auth's own
   * triggers (sign-up, /api/auth/send-verification-email) share the resend limit.
   */
  issueLimited(user: { id: string; email: string; name: string }): Promise<void>;
  /**
   * Resends a link for an address. Answers the same whether the address has an unverified account, a verified one or
   * none; refuses with RATE_LIMITED when the address got one less than resend_interval ago.
   */
  resend(email: string): Promise<{ userId: string | null }>;
  /** Consumes a link: marks the user's email verified. INVALID_VERIFICATION_TOKEN when unknown, used or expired. */
  verify(token: string): Promise<{ userId: string }>;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

export function createEmailVerification(options: EmailVerificationOptions): EmailVerification {
  const { db } = options;

  async function issue(user: { id: string; email: string; name: string }): Promise<void> {
    const token = randomBytes(32).toString('base64url');
    await db.transaction(async (tx) => {
      await tx.query(`DELETE FROM verification_tokens WHERE identifier LIKE $1 AND token = $2`, [
        `${TOKEN_PREFIX}%`,
        user.id,
      ]);
      await tx.query(
        `INSERT INTO verification_tokens (id, identifier, token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))`,
        [generateId('verification'), TOKEN_PREFIX + sha256(token), user.id, options.ttlSeconds],
      );
    });
    const link = new URL('/auth/email/verify', options.baseUrl);
    link.searchParams.set('token', token);
    sendDeferred(
      options.mailer,
      verificationEmail({
        to: user.email,
        name: user.name,
        link: link.toString(),
        ttlSeconds: options.ttlSeconds,
        appName: options.appName,
      }),
      options.log,
    );
  }

  /** Takes this address's send slot; returns 0, or the seconds until the slot frees up. */
  async function claimSlot(email: string): Promise<number> {
    const marker = SENT_PREFIX + sha256(email.trim().toLowerCase());
    const allowed = await db.transaction(async (tx) => {
      // Serialises resends of one address across connections and processes; the marker row is the limit.
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [marker]);
      const { rows } = await tx.query<{ wait: number }>(
        `SELECT ceil(extract(epoch FROM max(expires_at) - now()))::int AS wait
             FROM verification_tokens WHERE identifier = $1 AND expires_at > now()`,
        [marker],
      );
      const wait = rows[0]?.wait;
      if (wait) return { wait };
      await tx.query('DELETE FROM verification_tokens WHERE identifier = $1', [marker]);
      await tx.query(
        `INSERT INTO verification_tokens (id, identifier, token, expires_at)
           VALUES ($1, $2, '', now() + make_interval(secs => $3))`,
        [generateId('verification'), marker, options.resendIntervalSeconds],
      );
      return { wait: 0 };
    });
    return allowed.wait;
  }

  return {
    issue,

    async issueLimited(user) {
      if ((await claimSlot(user.email)) === 0) await issue(user);
    },

    async resend(email) {
      const wait = await claimSlot(email);
      if (wait > 0) throw new AppError('RATE_LIMITED', undefined, { retryAfter: wait });
      const { rows } = await db.query<{ id: string; email: string; name: string; email_verified: boolean }>(
        'SELECT id, email, name, email_verified FROM users WHERE lower(email) = lower($1)',
        [email],
      );
      const user = rows[0];
      if (!user || user.email_verified) return { userId: null };
      await issue(user);
      return { userId: user.id };
    },

    async verify(token) {
      const { rows } = await db.query<{ user_id: string; live: boolean }>(
        `DELETE FROM verification_tokens WHERE identifier = $1
         RETURNING token AS user_id, expires_at > now() AS live`,
        [TOKEN_PREFIX + sha256(token)],
      );
      const row = rows[0];
      if (!row?.live) throw new AppError('INVALID_VERIFICATION_TOKEN', undefined, { field: 'token' });
      const updated = await db.query('UPDATE users SET email_verified = true, updated_at = now() WHERE id = $1', [
        row.user_id,
      ]);
      if (updated.rowCount === 0) throw new AppError('INVALID_VERIFICATION_TOKEN', undefined, { field: 'token' });
      return { userId: row.user_id };
    },
  };
}
