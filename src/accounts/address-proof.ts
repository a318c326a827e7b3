import { AUDIT_USER_AGENT_MAX, type AuditLog, type AuditOrigin } from '../audit/index.js';
import type { Queryable } from '../db/index.js';

/** What reclaiming an account removed, counted: the `removed` details of its `account.reclaimed` audit event. */
export interface Reclaimed {
  sessions: number;
  password: number;
  oauthAccounts: number;
  passkeys: number;
  twoFactor: number;
  channelLinks: number;
  channelLinkCodes: number;
  devices: number;
  ipAllowlist: number;
}

export interface AddressProof {
  /** How the address was proven, for the audit event: 'magic_link', 'password_reset', 'email_verification'. */
  method: string;
  origin: AuditOrigin;
  audit: Pick<AuditLog, 'noteWritten'>;
  /** The proof just set the password (a reset link): it is the owner's, and stays. */
  keepPassword?: boolean;
  /**
   * The caller marked the address verified in this same transaction, on the proof's strength (an anonymous user's
   * upgrade its link completed): nobody had proven it before, so the account is reclaimed all the same.
   */
  verifiedHere?: boolean;
}

/**
 * Someone has just proven control of the user's email address (opened a link sent to it): the address is verified
 * from now on. The first proof on an account whose address was not verified yet also reclaims the account for the
 * address's owner. This is the defence against pre-hijacked accounts (Sudhodanan & Paverd 2022): whoever registered the
 * address before its owner, with a password or by upgrading an anonymous user, loses every way in they added while
 * nobody had proven the address. Their sessions end (the sessions trigger stops the tokens in every process), and the
 * password, provider (OAuth) accounts, passkeys, two-factor enrolment, channel links and unused link codes, devices and
 * IP allow list are removed. The id, email, license and data stay. An account whose address was already verified is
 * left as it is.
 *
 * A password reset is such a proof too (its link went to the address): run after the reset, with `keepPassword`, it
 * removes the rest and keeps the password the owner just chose. So is the emailed verification link of an address in
 * admin.emails (account/email-verification.ts): there the role goes with the proof.
 *
 * Runs in the caller's transaction (`tx`), so the reclaim, the verified mark and the `account.reclaimed` audit row
 * commit together. The user row is locked first: of two links opened at once, one reclaims and the other finds the
 * address verified. Null when there is no such user; `twoFactor`: the account has two-factor authentication now.
 */
export async function proveAddress(
  tx: Queryable,
  userId: string,
  proof: AddressProof,
): Promise<{ twoFactor: boolean; reclaimed: Reclaimed | null } | null> {
  const { rows } = await tx.query<{ email_verified: boolean; two_factor_enabled: boolean; ip_entries: number }>(
    `SELECT email_verified, two_factor_enabled, coalesce(cardinality(ip_allowlist), 0) AS ip_entries
       FROM users WHERE id = $1 FOR UPDATE`,
    [userId],
  );
  const user = rows[0];
  if (!user) return null;
  if (user.email_verified && !proof.verifiedHere) return { twoFactor: user.two_factor_enabled, reclaimed: null };

  // Deleting the devices also deletes their sessions (ON DELETE CASCADE): the sessions were deleted first, in this
  // statement, so they are counted once.
  const removed = await tx.query<{
    sessions: string | number;
    password: string | number;
    oauth_accounts: string | number;
    passkeys: string | number;
    two_factor: string | number;
    channel_links: string | number;
    channel_link_codes: string | number;
    devices: string | number;
  }>(
    `WITH s AS (DELETE FROM sessions WHERE user_id = $1 RETURNING 1),
          c AS (DELETE FROM user_credentials WHERE user_id = $1 AND NOT ($2 AND provider_id = 'credential')
                RETURNING provider_id),
          p AS (DELETE FROM passkeys WHERE user_id = $1 RETURNING 1),
          t AS (DELETE FROM two_factor WHERE user_id = $1 RETURNING 1),
          l AS (DELETE FROM user_channel_links WHERE user_id = $1 RETURNING 1),
          lc AS (DELETE FROM channel_link_codes WHERE user_id = $1 RETURNING 1),
          d AS (DELETE FROM devices WHERE user_id = $1 RETURNING 1)
     SELECT (SELECT count(*) FROM s) AS sessions,
            (SELECT count(*) FROM c WHERE provider_id = 'credential') AS password,
            (SELECT count(*) FROM c WHERE provider_id <> 'credential') AS oauth_accounts,
            (SELECT count(*) FROM p) AS passkeys,
            (SELECT count(*) FROM t) AS two_factor,
            (SELECT count(*) FROM l) AS channel_links,
            (SELECT count(*) FROM lc) AS channel_link_codes,
            (SELECT count(*) FROM d) AS devices`,
    [userId, proof.keepPassword === true],
  );
  const r = removed.rows[0];
  const reclaimed: Reclaimed = {
    sessions: Number(r?.sessions ?? 0),
    password: Number(r?.password ?? 0),
    oauthAccounts: Number(r?.oauth_accounts ?? 0),
    passkeys: Number(r?.passkeys ?? 0),
    twoFactor: Number(r?.two_factor ?? 0),
    channelLinks: Number(r?.channel_links ?? 0),
    channelLinkCodes: Number(r?.channel_link_codes ?? 0),
    devices: Number(r?.devices ?? 0),
    ipAllowlist: Number(user.ip_entries),
  };
  // The allow list goes too: one the registrant set would keep the owner from signing in at all.
  await tx.query(
    `UPDATE users SET email_verified = TRUE, two_factor_enabled = FALSE, ip_allowlist = NULL, updated_at = now()
      WHERE id = $1`,
    [userId],
  );
  const entry = {
    event: 'account.reclaimed' as const,
    userId,
    ...proof.origin,
    details: { method: proof.method, removed: reclaimed },
  };
  // Written here rather than through audit.record: no reclaim without its audit row.
  await tx.query(
    `INSERT INTO auth_audit_log (event, user_id, channel, ip_address, user_agent, details)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
    [
      entry.event,
      userId,
      entry.channel,
      entry.ip,
      entry.userAgent?.slice(0, AUDIT_USER_AGENT_MAX) ?? null,
      JSON.stringify(entry.details),
    ],
  );
  proof.audit.noteWritten(entry);
  return { twoFactor: false, reclaimed };
}
