import { AsyncLocalStorage } from 'node:async_hooks';
import type { DeviceStore } from '../accounts/devices.js';
import type { AuditLog } from '../audit/index.js';
import type { Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';
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
  /** Already filed under its device by the statement that created it (the password sign-in). */
  deviceFiled?: boolean;
}

/**
 * The policy every sign-in passes, whatever the method (password, passkey, OAuth, magic link): it runs where the auth
 * engine creates a session, so no sign-in route can forget it. Refuses disabled users (ACCOUNT_DISABLED) and addresses
 * outside the IP restrictions (IP_NOT_ALLOWED, audited); then files the new session under its device and grants the
 * admin role to the configured admin emails once verified.
 */
export function createSignInGuard(deps: {
  db: Queryable;
  ipPolicy: IpPolicy;
  devices: DeviceStore;
  audit: AuditLog;
  adminEmails: readonly string[];
}) {
  const adminEmails = deps.adminEmails.map((e) => e.trim().toLowerCase());
  const readUser = async (userId: string) => {
    const { rows } = await deps.db.query<{ disabled: boolean; ip_allowlist: string[] | null }>(
      'SELECT disabled_at IS NOT NULL AS disabled, ip_allowlist FROM users WHERE id = $1',
      [userId],
    );
    const row = rows[0];
    return row && { disabled: row.disabled, ipAllowlist: row.ip_allowlist };
  };
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
      const key = deviceFiled ? null : (deviceKey ?? signInContext.getStore()?.deviceKey ?? null);
      if (key) await deps.devices.bindSession({ sessionId, userId, key, userAgent });
      // Only a proven address: anyone can register one of these (verification is off by default). A link that
      // verifies the address and signs in (magic link, OAuth) grants it here at once; the emailed verification link
      // makes no session, so there it is the next sign-in.
      if (adminEmails.length > 0) {
        await deps.db.query(
          `UPDATE users SET role = 'admin'
            WHERE id = $1 AND lower(email) = ANY($2::text[]) AND email_verified AND role <> 'admin'`,
          [userId, adminEmails],
        );
      }
    },
  };
}

export type SignInGuard = ReturnType<typeof createSignInGuard>;
