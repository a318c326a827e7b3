import { afterAnswer } from '../account/deferred.js';
import type { AuditLog, AuditOrigin } from '../audit/index.js';
import { type Database, isUniqueViolation, type Queryable } from '../db/index.js';
import { gatewayLink, type Mailer } from '../email/index.js';
import { escapeHtml } from '../email/templates.js';
import { AppError } from '../errors/index.js';
import { proveAddress } from './address-proof.js';
import { isNewEmailAddress } from './email-address.js';
import { hashSecret, newSecret } from './secrets.js';

export interface MagicLinkSettings {
  baseUrl: string;
  expiresIn: number;
  createAccounts: boolean;
  maxPerWindow: number;
  window: number;
}

export interface MagicLinkDeps {
  db: Database;
  mailer: Mailer;
  /** Creates a passwordless user (create_accounts) and returns its id. */
  createUser(email: string): Promise<string>;
  /** Hears of the account.reclaimed events a link writes (see proveAddress). */
  audit: Pick<AuditLog, 'noteWritten'>;
  log: { error(obj: object, msg: string): void };
}

export interface MagicLinks {
  /**
   * Emails a sign-in link to `email` if it has an account (or accounts may be created). The caller learns nothing
   * about the address: the same answer, and both the account lookup and the email start on a later turn of the event
   * loop, once the caller has returned its answer. Throws RATE_LIMITED past the limit, its retryAfter the seconds until
   * the address may ask again.
   * `codeChallenge` binds the sign-in the link ends in to the requester's front end.
   */
  request(email: string, codeChallenge?: string): Promise<void>;
  /**
   * The user a valid link names (the token is used up), or null. The link proves the address: an account whose email
   * was not verified yet is reclaimed for its owner first (proveAddress: everyone else's sessions and ways in go;
   * `origin` is the audit event's). `twoFactor`: the account has two-factor authentication, which a link cannot stand
   * in for (the route refuses it: the inbox alone is one factor). `codeChallenge`: the requester's, for the exchange
   * code the link ends with (see code-challenge.ts).
   */
  verify(token: string, origin: AuditOrigin): Promise<MagicLinkUse | null>;
  /** Deletes rows past both their expiry and the rate-limit window. */
  purgeExpired(): Promise<number>;
  /** The per-address limit's window, in seconds (a refusal is audited once per client, address and window). */
  readonly window: number;
}

export interface MagicLinkUse {
  userId: string;
  created: boolean;
  twoFactor: boolean;
  codeChallenge: string | null;
}

export const MAGIC_LINK_VERIFY_PATH = '/auth/magic-link/verify';

export function createMagicLinks(settings: MagicLinkSettings, deps: MagicLinkDeps): MagicLinks {
  const { db, mailer } = deps;
  /**
   * Whether a link may create an account for `email`: with create_accounts, and only for an address registration
   * takes (the request's rule is the wider one for looking addresses up, so that older accounts still sign in).
   */
  const mayCreate = (email: string) => settings.createAccounts && isNewEmailAddress(email);

  /** After the answer: the email, if the address can sign in (has an account, or accounts may be created). */
  async function sendLink(email: string, token: string): Promise<void> {
    if (!mayCreate(email)) {
      const user = await db.query('SELECT 1 FROM users WHERE lower(email) = $1 AND NOT is_anonymous', [email]);
      if (user.rows.length === 0) return;
    }
    const url = gatewayLink(settings.baseUrl, MAGIC_LINK_VERIFY_PATH, token);
    const minutes = Math.max(1, Math.round(settings.expiresIn / 60));
    await mailer.send({
      to: email,
      subject: 'Your sign-in link',
      text: `Sign in by opening this link (valid ${minutes} minutes, once):\n\n${url}\n\nIf you did not ask for it, ignore this email.`,
      html: `<p>Sign in by opening this link (valid ${minutes} minutes, once):</p><p><a href="${escapeHtml(url)}">Sign in</a></p><p>If you did not ask for it, ignore this email.</p>`,
    });
  }

  /** The link's use by the account `email` already has, its address proven (see verify); null when it has none. */
  async function existingUse(
    tx: Queryable,
    email: string,
    origin: AuditOrigin,
  ): Promise<Omit<MagicLinkUse, 'codeChallenge'> | null> {
    const user = await tx.query<{ id: string }>('SELECT id FROM users WHERE lower(email) = $1 AND NOT is_anonymous', [
      email,
    ]);
    const userId = user.rows[0]?.id;
    if (!userId) return null;
    const proven = await proveAddress(tx, userId, { method: 'magic_link', origin, audit: deps.audit });
    return proven && { userId, created: false, twoFactor: proven.twoFactor };
  }

  return {
    window: settings.window,

    async request(email, codeChallenge) {
      const token = newSecret();
      /** 0: sent; else the seconds until the address may ask again. */
      const retryAfter = await db.transaction(async (tx): Promise<number> => {
        // Serialises requests for one address, so a burst cannot slip past the count.
        await tx.query('SELECT pg_advisory_xact_lock(727210002, hashtext($1))', [email]);
        // wait: seconds until the count is below the limit again, when the request that takes it there leaves the
        // window (the oldest one, or a later one if the limit was lowered); null while under the limit.
        const { rows } = await tx.query<{ n: string | number; wait: string | number | null }>(
          `SELECT count(*) AS n,
                  greatest(1, ceil(extract(epoch FROM
                    (array_agg(created_at ORDER BY created_at))[count(*) - $3 + 1]
                    + make_interval(secs => $2) - now()))) AS wait
             FROM magic_link_tokens
            WHERE email = $1 AND created_at > now() - make_interval(secs => $2)`,
          [email, settings.window, settings.maxPerWindow],
        );
        if (Number(rows[0]?.n ?? 0) >= settings.maxPerWindow) return Number(rows[0]?.wait ?? settings.window);
        // A row is written for unknown addresses too (its token is never sent): the limit counts every request alike.
        await tx.query(
          `INSERT INTO magic_link_tokens (token_hash, email, expires_at, code_challenge)
           VALUES ($1, $2, now() + make_interval(secs => $3), $4)`,
          [hashSecret(token), email, settings.expiresIn, codeChallenge ?? null],
        );
        return 0;
      });
      if (retryAfter > 0) throw new AppError('RATE_LIMITED', undefined, { retryAfter });
      // Whether the address has an account, and the email, wait for a later turn of the event loop: the route has
      // answered by then, or waits only for what every address waits for (its onSend hooks). Until then, a known
      // address costs exactly what an unknown one costs: the same statements, no SMTP work.
      // After-answer work: shutdown waits for it.
      afterAnswer(new Promise<void>((resolve) => setImmediate(resolve)).then(() => sendLink(email, token))).catch(
        (err: Error) => {
          deps.log.error({ err: { message: err.message } }, 'magic link email failed');
        },
      );
    },

    async verify(token, origin) {
      const found = await db.transaction(async (tx) => {
        const { rows } = await tx.query<{ email: string; code_challenge: string | null }>(
          `UPDATE magic_link_tokens SET used_at = now()
            WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
            RETURNING email, code_challenge`,
          [hashSecret(token)],
        );
        const email = rows[0]?.email;
        if (!email) return null;
        const codeChallenge = rows[0]?.code_challenge ?? null;
        return { email, codeChallenge, user: await existingUse(tx, email, origin) };
      });
      if (!found) return null;
      const { email, codeChallenge } = found;
      if (found.user) return { ...found.user, codeChallenge };
      if (!mayCreate(email)) return null;
      try {
        return { userId: await deps.createUser(email), created: true, twoFactor: false, codeChallenge };
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
      }
      // The address got an account since the lookup above: another link to it, opened at the same moment, created it
      // (users_email_lower_key let one insert through), or someone registered it. This link is a proof of the inbox
      // like any other, so it signs in to that account with the checks every existing account's link gets.
      const user = await db.transaction((tx) => existingUse(tx, email, origin));
      return user && { ...user, codeChallenge };
    },

    async purgeExpired() {
      const { rowCount } = await db.query(
        `DELETE FROM magic_link_tokens
          WHERE expires_at <= now() AND created_at <= now() - make_interval(secs => $1)`,
        [settings.window],
      );
      return rowCount;
    },
  };
}
