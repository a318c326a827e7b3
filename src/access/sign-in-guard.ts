import { AsyncLocalStorage } from 'node:async_hooks';
import { deviceRowOf } from '../accounts/devices.js';
import type { AuditLog } from '../audit/index.js';
import type { Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';
import { clientKey } from '../ratelimit/client-key.js';
import { createOncePerWindow } from '../ratelimit/once-per-window.js';
import type { IpPolicy } from './ip-policy.js';

/** The device key of the sign-in request being served (set by the access plugin), for sessions created deep inside. */
export const signInContext = new AsyncLocalStorage<{ deviceKey: string }>();

export interface SessionAboutToStart {
  userId: string;
  ip: string | undefined;
  userAgent: string | null;
  /** What the guard checks, when the caller has just read it (the password sign-in): saves a query. */
  user?: { disabled: boolean; ipAllowlist: string[] | null };
}

export interface SessionStarted {
  sessionId: string;
  userId: string;
  userAgent: string | null;
  deviceKey: string | null;
  /**
   * Created by a statement that filed it under its device and wrote it only while the account was enabled, holding the
   * user row FOR SHARE (the password sign-in): nothing left to file or check again.
   */
  deviceFiled?: boolean;
}

/**
 * The policy every sign-in passes, whatever the method (password, passkey, OAuth, magic link): it runs where the auth
 * engine creates a session, so no sign-in route can forget it. Refuses disabled users (ACCOUNT_DISABLED) and addresses
 * outside the IP restrictions (IP_NOT_ALLOWED, audited); then files the new session under its device and grants the
 * admin role to the configured admin emails once verified.
 *
 * The check before reads the user; the session is inserted by another statement. A disable (users.disabled_at, then
 * the user's sessions deleted) or a reclaim by the address's owner (accounts/address-proof.ts) committing between the
 * two would miss the session about to be inserted, and it would outlive them. So afterSession checks again once the
 * session exists, holding the user row and the session, and undoes a session whose user is disabled or which
 * is gone (ACCOUNT_DISABLED). Safe in both orders: a change that commits before that statement, or holds the user row
 * while it runs (it waits, then reads what the change wrote), is seen by it; one that starts later deletes the session
 * itself. A reclaim does not disable: what it removes (a passkey, a provider account) is for the method's own check
 * (passkeys.ts checks its passkey again likewise).
 */
export function createSignInGuard(deps: {
  db: Queryable;
  ipPolicy: IpPolicy;
  audit: AuditLog;
  adminEmails: readonly string[];
}) {
  const adminEmails = deps.adminEmails.map((e) => e.trim().toLowerCase());
  // A refused sign-in is audited once a minute per user, client and reason, as the other ip.refused rows are (app.ts,
  // access.plugin.ts): with the right password, a loop from outside the allow list is no write flood either.
  const refusedOnce = createOncePerWindow();
  const readUser = async (userId: string) => {
    const { rows } = await deps.db.query<{ disabled: boolean; ip_allowlist: string[] | null }>(
      'SELECT disabled_at IS NOT NULL AS disabled, ip_allowlist FROM users WHERE id = $1',
      [userId],
    );
    const row = rows[0];
    return row && { disabled: row.disabled, ipAllowlist: row.ip_allowlist };
  };
  // Only a proven address: anyone can register one of these (verification is off by default). A link that verifies
  // the address and signs in (magic link, OAuth) grants it at once; the emailed verification link makes no session, so
  // there it is the next sign-in.
  const grantAdmin = (userId: string) =>
    deps.db.query(
      `UPDATE users SET role = 'admin'
        WHERE id = $1 AND lower(email) = ANY($2::text[]) AND email_verified AND role <> 'admin'`,
      [userId, adminEmails],
    );
  return {
    async beforeSession({ userId, ip, userAgent, user: known }: SessionAboutToStart): Promise<void> {
      const user = known ?? (await readUser(userId));
      if (!user) return; // a user being created in the same sign-up: nothing to refuse yet but the global lists
      if (user.disabled) throw new AppError('ACCOUNT_DISABLED');
      // No address (Better Auth's getIP answers none for one it cannot parse) is no reason to skip the user's own
      // allow list: the session could not be told apart from one outside it.
      const unknown = ip === undefined && (user.ipAllowlist?.length ?? 0) > 0;
      const refusal = unknown ? 'unparseable' : deps.ipPolicy.refuse(ip, user.ipAllowlist);
      if (refusal) {
        if (!refusedOnce.first(`${userId}|${ip === undefined ? '' : clientKey(ip)}|${refusal}`)) {
          throw new AppError('IP_NOT_ALLOWED');
        }
        await deps.audit.record({
          event: 'ip.refused',
          userId,
          ip: ip ?? null,
          userAgent,
          details: { reason: refusal, at: 'sign-in' },
        });
        throw new AppError('IP_NOT_ALLOWED');
      }
    },

    async afterSession({ sessionId, userId, userAgent, deviceKey, deviceFiled }: SessionStarted): Promise<void> {
      if (deviceFiled) {
        if (adminEmails.length > 0) await grantAdmin(userId);
        return;
      }
      const key = deviceKey ?? signInContext.getStore()?.deviceKey ?? null;
      const device = key ? deviceRowOf(key, userAgent) : null;
      // One statement (one round trip on every sign-in): the check, then the device (created on first use, as
      // DeviceStore.bindSession files it) and the admin role, or the session undone. The user row is locked before the
      // session, as a disable and a reclaim lock it before they delete sessions; FOR NO KEY UPDATE when the statement
      // may grant the role (two sign-ins sharing the row would each wait for the other to write it: a deadlock). The
      // session FOR KEY SHARE: a delete in flight is waited for, a refresh of its expiry is not.
      const userLock = adminEmails.length > 0 ? 'FOR NO KEY UPDATE OF u' : 'FOR SHARE OF u';
      const { rows } = await deps.db.query<{ enabled: boolean }>(
        `WITH account AS (
           SELECT u.id, u.disabled_at IS NULL AS enabled
             FROM users u JOIN sessions s ON s.user_id = u.id AND s.id = $1
            WHERE u.id = $2
              ${userLock} FOR KEY SHARE OF s
         ), undone AS (
           DELETE FROM sessions WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM account WHERE enabled)
         ), device AS (
           INSERT INTO devices (id, user_id, key_hash, name, user_agent)
           SELECT $3, id, $4, $5, $6 FROM account WHERE enabled AND $4::text IS NOT NULL
           ON CONFLICT (user_id, key_hash) DO UPDATE SET last_seen_at = now(), user_agent = EXCLUDED.user_agent
           RETURNING id
         ), filed AS (
           UPDATE sessions SET device_id = device.id FROM device WHERE sessions.id = $1
         ), admin AS (
           UPDATE users SET role = 'admin'
            WHERE id IN (SELECT id FROM account WHERE enabled)
              AND lower(email) = ANY($7::text[]) AND email_verified AND role <> 'admin'
         )
         SELECT enabled FROM account`,
        [sessionId, userId, device?.id ?? null, device?.keyHash ?? null, device?.name ?? null, userAgent, adminEmails],
      );
      if (!rows[0]?.enabled) throw new AppError('ACCOUNT_DISABLED');
    },
  };
}

export type SignInGuard = ReturnType<typeof createSignInGuard>;
