import { createHash, randomBytes } from 'node:crypto';
import { proveAddress } from '../accounts/address-proof.js';
import { completeUpgrade } from '../accounts/anonymous-users.js';
import type { AuditLog, AuditOrigin } from '../audit/index.js';
import { generateId } from '../auth/index.js';
import type { Database, Queryable } from '../db/index.js';
import { type EmailMessage, gatewayLink, type Mailer, verificationEmail } from '../email/index.js';
import { signUpAttemptEmail } from '../email/templates.js';
import { AppError } from '../errors/index.js';
import { afterAnswer, sendDeferred, withSends } from './deferred.js';
import { claimSendSlot, freeSendSlot } from './send-slots.js';

/**
 * Email verification with our own links: Better Auth's are stateless JWTs that verify as often as they are opened until
 * they expire; ours are single-use. A link carries 256 random bits; verification_tokens keeps only their SHA-256
 * (identifier `email-verification:<hex>`, value = `<user id>\n<address>`: a link proves the address it was sent to) and
 * consuming is one DELETE ... RETURNING, so a link works once even when opened twice at the same moment.
 */

const TOKEN_PREFIX = 'email-verification:';

export interface EmailVerificationOptions {
  db: Database;
  mailer: Mailer;
  log: { error(obj: object, msg: string): void };
  /** server.base_url: links are built on it. */
  baseUrl: string;
  appName: string;
  ttlSeconds: number;
  resendIntervalSeconds: number;
  /**
   * Emails the address a reset link (Better Auth's reset, whose email for an unverified account asks to confirm the
   * address and choose a password): the resend's answer to anyone not signed in to the account.
   */
  sendPasswordChoice(email: string): Promise<void>;
}

export interface EmailVerification {
  /**
   * The email a sign-up (or an anonymous user's upgrade) sends to `user.email`, prepared and sent after the request has
   * answered: a request for an address with an account costs what one for a new address costs, and a failure is
   * logged, never the request's (the user asks for a new link). Which email depends on the address, which the request
   * must not reveal: a link that verifies the address for `user.id` when the address is that user's, unverified, or
   * nobody's (an upgrade waiting for it); otherwise, when the address belongs to another account or is verified
   * already, a notice to its owner that someone tried to sign up with it. Silently skipped when the address got an
   * email less than resend_interval ago: Better Auth's own triggers (sign-up, /api/auth/send-verification-email) share
   * the resend limit. `existingAccount`: a sign-up found `user` already registered with the address; its owner gets
   * the notice whether or not the address is verified (a link would verify the registrant's account for them).
   */
  issueLimited(user: { id: string; email: string }, options?: { existingAccount?: boolean }): Promise<void>;
  /**
   * Resends for an address, in two steps so that the request can answer between them. This one takes the address's
   * send slot, the same work whatever the address: RATE_LIMITED when it got an email less than resend_interval ago.
   * It returns the second step, for after the answer, which acts when the address has an unverified account (and
   * resolves with its id, else null). A caller signed in to that account (`signedInAs`) gets a new verification link:
   * they hold the account's password or session, so it is theirs. Anyone else, who may be the address's owner facing
   * an account someone else registered with it, gets a link to confirm the address by choosing a password
   * (`sendPasswordChoice`), which reclaims the account for them; a plain link would verify the registrant's account,
   * password and all. The second step ends once the email has gone out; a failure there, to prepare the email or to
   * send it, frees the slot again and throws, but for the password choice's: only an unverified account's address
   * sends one, so freeing its slot would tell it from any other by the next resend's answer (202, not 429). It
   * resolves with the account a verification link went to (`linkSentTo`: the caller's own), else null: the password
   * choice is a reset, which the reset's own hook records.
   */
  resend(email: string, signedInAs?: string | null): Promise<() => Promise<{ linkSentTo: string | null }>>;
  /**
   * Consumes a link: marks the user's email verified, or completes the anonymous user's upgrade to the address.
   * INVALID_VERIFICATION_TOKEN when unknown, used or expired; EMAIL_TAKEN when an upgrade's address got an account
   * meanwhile.
   *
   * An address in admin.emails is different: proving it makes the account an administrator at its next sign-in, and
   * the link may have been asked for by whoever registered the address first (verification is off by default), its
   * owner only pressing the button. So for a user not yet an administrator the link proves the address as a magic link
   * or a reset does (proveAddress, audited `account.reclaimed` with `method: 'email_verification'`): the sessions,
   * password and every other way in added before the proof go, and the owner chooses a password with a reset.
   * `reclaimed`: that happened, the user has to.
   */
  verify(token: string, proof: VerificationProof): Promise<{ userId: string; reclaimed: boolean }>;
}

/** What verify needs for a link that proves an administrator's address. */
export interface VerificationProof {
  /** admin.emails. */
  adminEmails: readonly string[];
  origin: AuditOrigin;
  audit: Pick<AuditLog, 'noteWritten'>;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
const normalize = (email: string) => email.trim().toLowerCase();

export function createEmailVerification(options: EmailVerificationOptions): EmailVerification {
  const { db, log } = options;

  /** A new link for this user and address (the user's older links stop working); the email to send after commit. */
  async function issue(tx: Queryable, user: { id: string; email: string }): Promise<EmailMessage> {
    const token = randomBytes(32).toString('base64url');
    await tx.query(`DELETE FROM verification_tokens WHERE identifier LIKE $1 AND split_part(token, E'\\n', 1) = $2`, [
      `${TOKEN_PREFIX}%`,
      user.id,
    ]);
    await tx.query(
      `INSERT INTO verification_tokens (id, identifier, token, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4))`,
      [generateId('verification'), TOKEN_PREFIX + sha256(token), `${user.id}\n${user.email}`, options.ttlSeconds],
    );
    return verificationEmail({
      to: user.email,
      link: gatewayLink(options.baseUrl, '/auth/email/verify', token),
      ttlSeconds: options.ttlSeconds,
      appName: options.appName,
    });
  }

  /** Takes this address's slot for verification emails inside `tx` (see send-slots.ts). */
  const claimSlot = (tx: Queryable, email: string) =>
    claimSendSlot(tx, 'email-verification', email, options.resendIntervalSeconds);

  /**
   * issueLimited's work; the slot, the link and the decision commit together, so a failure leaves the slot free, and
   * an email the mail server refuses frees it again (withSends waits for it), so that the user may ask at once.
   */
  async function sendFor(user: { id: string; email: string }, existingAccount: boolean): Promise<void> {
    const email = normalize(user.email);
    const prepared = await db.transaction(async (tx) => {
      const slot = await claimSlot(tx, email);
      if ('wait' in slot) return null;
      const { rows } = await tx.query<{ id: string; email_verified: boolean }>(
        'SELECT id, email_verified FROM users WHERE lower(email) = $1',
        [email],
      );
      const owner = rows[0];
      const message =
        owner && (existingAccount || owner.id !== user.id || owner.email_verified)
          ? signUpAttemptEmail({ to: email, appName: options.appName })
          : await issue(tx, { ...user, email });
      return { marker: slot.marker, message };
    });
    if (!prepared) return;
    try {
      await withSends(async () => sendDeferred(options.mailer, prepared.message, log));
    } catch (err) {
      await freeSendSlot(db, prepared.marker);
      throw err;
    }
  }

  return {
    async issueLimited(user, { existingAccount = false } = {}) {
      // After the answer (shutdown waits for it: afterAnswer).
      afterAnswer(
        new Promise<void>((resolve) => setImmediate(resolve)).then(() => sendFor(user, existingAccount)),
      ).catch((err: Error) => {
        log.error({ err: { message: err.message } }, 'preparing a verification email failed');
      });
    },

    async resend(email, signedInAs = null) {
      const address = normalize(email);
      const slot = await db.transaction((tx) => claimSlot(tx, address));
      if ('wait' in slot) throw new AppError('RATE_LIMITED', undefined, { retryAfter: slot.wait });

      return async () => {
        // Whether a failure frees the slot: not once the answer could depend on the address having an account.
        let freeOnFailure = true;
        try {
          // withSends: the link's email is waited for, so that one the mail server refused frees the slot too.
          return await withSends(async () => {
            const found = await db.transaction(async (tx) => {
              const { rows } = await tx.query<{ id: string; email_verified: boolean }>(
                'SELECT id, email_verified FROM users WHERE lower(email) = $1',
                [address],
              );
              const user = rows[0];
              if (!user || user.email_verified) return null;
              if (user.id !== signedInAs) return { userId: user.id, message: null };
              return { userId: user.id, message: await issue(tx, { id: user.id, email: address }) };
            });
            if (!found) return { linkSentTo: null };
            if (!found.message) {
              // Only an unverified account's address gets here, and the caller may not know it has one: a failure
              // keeps the slot, as an unknown or verified address, which sends nothing, keeps it. (The reset limit's
              // own slot is freed: /auth/password/forgot answers the same either way.)
              freeOnFailure = false;
              await options.sendPasswordChoice(address);
              return { linkSentTo: null };
            }
            sendDeferred(options.mailer, found.message, log);
            return { linkSentTo: found.userId };
          });
        } catch (err) {
          // As after a sign-up whose email could not be prepared, the slot is free again: the user may ask at once.
          if (freeOnFailure) await freeSendSlot(db, slot.marker);
          throw err;
        }
      };
    },

    async verify(token, proof) {
      const adminEmails = new Set(proof.adminEmails.map(normalize));
      /**
       * Whether the link's user, locked, has an address in admin.emails (the link's own one, for links that carry it)
       * and is not an administrator yet: the proof reclaims the account then. Locked before it is read, as proveAddress
       * locks it, so a sign-in's session written meanwhile is waited for and then deleted with the others.
       */
      const claimsAdmin = async (tx: Queryable, userId: string, email: string | null) => {
        if (adminEmails.size === 0 || (email !== null && !adminEmails.has(email))) return false;
        const { rows } = await tx.query<{ email: string; role: string }>(
          'SELECT lower(email) AS email, role FROM users WHERE id = $1 FOR UPDATE',
          [userId],
        );
        const user = rows[0];
        return (
          !!user && (email === null || user.email === email) && adminEmails.has(user.email) && user.role !== 'admin'
        );
      };
      return db.transaction(async (tx) => {
        const { rows } = await tx.query<{ value: string; live: boolean }>(
          `DELETE FROM verification_tokens WHERE identifier = $1
           RETURNING token AS value, expires_at > now() AS live`,
          [TOKEN_PREFIX + sha256(token)],
        );
        const row = rows[0];
        if (!row?.live) throw new AppError('INVALID_VERIFICATION_TOKEN', undefined, { field: 'token' });
        // Links issued before they carried their address name the user only: they verify the user's current one.
        const [userId = '', email = null] = row.value.split('\n');
        const upgraded = email !== null && (await completeUpgrade(tx, userId, email));
        if (await claimsAdmin(tx, userId, email)) {
          // An upgrade just verified the address with the password its requester chose: reclaimed all the same.
          const proven = await proveAddress(tx, userId, {
            method: 'email_verification',
            origin: proof.origin,
            audit: proof.audit,
            verifiedHere: upgraded,
          });
          return { userId, reclaimed: proven?.reclaimed != null };
        }
        if (upgraded) return { userId, reclaimed: false };
        const updated = await tx.query(
          `UPDATE users SET email_verified = true, updated_at = now()
            WHERE id = $1 AND ($2::text IS NULL OR lower(email) = $2)`,
          [userId, email],
        );
        if (updated.rowCount === 0) throw new AppError('INVALID_VERIFICATION_TOKEN', undefined, { field: 'token' });
        return { userId, reclaimed: false };
      });
    },
  };
}
