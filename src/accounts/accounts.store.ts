import type { Database, Queryable } from '../db/index.js';
import type { LicenseRow } from '../licenses/index.js';
import { asAdmin, keepingAnAdmin } from './admin-guard.js';
import { deviceName } from './user-agent.js';

export interface SessionSummary {
  id: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  expiresAt: Date;
  ip: string | null;
  userAgent: string | null;
  deviceName: string;
  deviceId: string | null;
  channel: string | null;
}

interface SessionRow {
  id: string;
  created_at: Date | string;
  last_used_at: Date | string | null;
  expires_at: Date | string;
  ip_address: string | null;
  user_agent: string | null;
  device_id: string | null;
  device_name: string | null;
  last_channel: string | null;
}

const date = (v: Date | string) => new Date(v);

/** Replaces a user's allow list (empty: no per-user restriction). False when the user does not exist. */
async function writeIpAllowlist(db: Queryable, userId: string, cidrs: readonly string[]): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE users SET ip_allowlist = $2::text[], updated_at = now() WHERE id = $1', [
    userId,
    cidrs.length > 0 ? cidrs : null,
  ]);
  return rowCount > 0;
}

/** Sessions, allow lists and the admin's view of users: the SQL of account management, one module. */
export function createAccountsStore(
  db: Database,
  /** Writes session uses not yet written (they are written behind), so a list shows the request that asks for it. */
  flushUses: () => Promise<void> = async () => {},
  /** auth.session.idle_timeout (seconds, 0: off): a session idle longer is refused, so it is not listed either. */
  idleTimeout = 0,
) {
  return {
    async listSessions(userId: string): Promise<SessionSummary[]> {
      await flushUses();
      const { rows } = await db.query<SessionRow>(
        `SELECT s.id, s.created_at, s.last_used_at, s.expires_at, s.ip_address, s.user_agent, s.device_id,
                s.last_channel, d.name AS device_name
           FROM sessions s LEFT JOIN devices d ON d.id = s.device_id
          WHERE s.user_id = $1 AND s.expires_at > now()
            -- A minute's slack: a last use is written at most once a minute, so a live session is never left out.
            AND ($2::int = 0 OR s.last_used_at > now() - make_interval(secs => $2::int + 60))
          ORDER BY s.created_at DESC, s.id`,
        [userId, idleTimeout],
      );
      return rows.map((r) => ({
        id: r.id,
        createdAt: date(r.created_at),
        lastUsedAt: r.last_used_at ? date(r.last_used_at) : null,
        expiresAt: date(r.expires_at),
        ip: r.ip_address || null,
        userAgent: r.user_agent || null,
        deviceName: r.device_name || deviceName(r.user_agent),
        deviceId: r.device_id,
        channel: r.last_channel,
      }));
    },

    /** Deletes one of this user's sessions (the sessions trigger ends it everywhere); false when it is not theirs. */
    async revokeSession(userId: string, sessionId: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM sessions WHERE id = $1 AND user_id = $2', [sessionId, userId]);
      return rowCount > 0;
    },

    /**
     * Ends the user's other sessions and voids all their pending channel link codes: those the ended sessions took go
     * with them (ON DELETE CASCADE), and so do the kept session's own and codes from before codes recorded their
     * session (shutting others out is a response to someone else being in; asking again costs one click).
     * Returns the number of sessions ended.
     */
    async revokeOtherSessions(userId: string, keepSessionId: string | null): Promise<number> {
      return db.transaction((tx) => endOtherSessions(tx, userId, keepSessionId));
    },

    async getIpAllowlist(userId: string): Promise<string[]> {
      const { rows } = await db.query<{ ip_allowlist: string[] | null }>(
        'SELECT ip_allowlist FROM users WHERE id = $1',
        [userId],
      );
      return rows[0]?.ip_allowlist ?? [];
    },

    setIpAllowlist: (userId: string, cidrs: readonly string[]) => writeIpAllowlist(db, userId, cidrs),
  };
}

export type AccountsStore = ReturnType<typeof createAccountsStore>;

export interface UserSummary {
  id: string;
  email: string;
  name: string;
  role: string;
  emailVerified: boolean;
  disabledAt: Date | null;
  createdAt: Date;
  licenseType: string | null;
}

interface UserRow {
  id: string;
  email: string;
  name: string;
  role: string;
  email_verified: boolean;
  disabled_at: Date | string | null;
  created_at: Date | string;
  license_type: string | null;
}

const toUser = (r: UserRow): UserSummary => ({
  id: r.id,
  email: r.email,
  name: r.name,
  role: r.role,
  emailVerified: r.email_verified,
  disabledAt: r.disabled_at ? date(r.disabled_at) : null,
  createdAt: date(r.created_at),
  licenseType: r.license_type,
});

const USER_COLUMNS = `u.id, u.email, u.name, u.role, u.email_verified, u.disabled_at, u.created_at, l.license_type`;

/** Escapes LIKE wildcards so a search for "a_b%" matches those characters literally. */
const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** Deletes a user (the admin API, or their own request): never the last enabled administrator (LAST_ADMIN). */
export async function deleteUser(db: Database, userId: string, actor?: string): Promise<boolean> {
  return keepingAnAdmin(
    db,
    userId,
    async (tx) => {
      const { rowCount } = await tx.query('DELETE FROM users WHERE id = $1', [userId]);
      return rowCount > 0;
    },
    actor,
  );
}

/**
 * What administrators (the admin API and the CLI) do to users. A change's `actor` is the administrator who makes it:
 * ADMIN_REQUIRED unless they still are one when it is written (see asAdmin); without one, an operator at the shell.
 */
export function createAdminStore(db: Database) {
  return {
    /** Users matching `query` (email, name or id, case-insensitive), newest first. */
    async listUsers(page: { query?: string; limit: number; offset: number }) {
      const pattern = page.query ? likePattern(page.query.trim().toLowerCase()) : null;
      const where = `($1::text IS NULL OR lower(u.email) LIKE $1 OR lower(u.name) LIKE $1 OR lower(u.id) LIKE $1)`;
      const [list, count] = await Promise.all([
        db.query<UserRow>(
          `SELECT ${USER_COLUMNS} FROM users u LEFT JOIN user_licenses l ON l.user_id = u.id
            WHERE ${where} ORDER BY u.created_at DESC, u.id LIMIT $2 OFFSET $3`,
          [pattern, page.limit, page.offset],
        ),
        db.query<{ total: string | number }>(`SELECT count(*) AS total FROM users u WHERE ${where}`, [pattern]),
      ]);
      return { users: list.rows.map(toUser), total: Number(count.rows[0]?.total ?? 0) };
    },

    async getUser(userId: string): Promise<UserSummary | null> {
      const { rows } = await db.query<UserRow>(
        `SELECT ${USER_COLUMNS} FROM users u LEFT JOIN user_licenses l ON l.user_id = u.id WHERE u.id = $1`,
        [userId],
      );
      return rows[0] ? toUser(rows[0]) : null;
    },

    async findUserByEmail(email: string): Promise<UserSummary | null> {
      const { rows } = await db.query<UserRow>(
        `SELECT ${USER_COLUMNS} FROM users u LEFT JOIN user_licenses l ON l.user_id = u.id
          WHERE lower(u.email) = lower($1)`,
        [email.trim()],
      );
      return rows[0] ? toUser(rows[0]) : null;
    },

    async licenseRow(userId: string): Promise<LicenseRow | null> {
      const { rows } = await db.query<LicenseRow>(
        'SELECT license_type, features, resource_limits FROM user_licenses WHERE user_id = $1',
        [userId],
      );
      return rows[0] ?? null;
    },

    async passkeys(userId: string) {
      const { rows } = await db.query<{
        id: string;
        name: string | null;
        device_type: string;
        created_at: Date | string;
      }>('SELECT id, name, device_type, created_at FROM passkeys WHERE user_id = $1 ORDER BY created_at', [userId]);
      return rows.map((r) => ({ id: r.id, name: r.name, deviceType: r.device_type, createdAt: date(r.created_at) }));
    },

    async channelLinks(userId: string) {
      const { rows } = await db.query<{ channel_type: string; channel_user_id: string; created_at: Date | string }>(
        'SELECT channel_type, channel_user_id, created_at FROM user_channel_links WHERE user_id = $1 ORDER BY id',
        [userId],
      );
      return rows.map((r) => ({
        channel: r.channel_type,
        channelUserId: r.channel_user_id,
        createdAt: date(r.created_at),
      }));
    },

    /**
     * Sets a user's license (creating the row). features and resource_limits replace the row's own overrides when
     * given; the license type's config defaults still apply underneath. The user_licenses trigger notifies every process.
     */
    async setLicense(
      userId: string,
      license: { type: string; features?: Record<string, unknown>; resourceLimits?: Record<string, unknown> },
      actor?: string,
    ): Promise<boolean> {
      return asAdmin(db, actor, null, async (tx) => {
        const { rowCount } = await tx.query(
          `INSERT INTO user_licenses (user_id, license_type, features, resource_limits)
           SELECT id, $2, COALESCE($3::jsonb, '{}'::jsonb), COALESCE($4::jsonb, '{}'::jsonb) FROM users WHERE id = $1
           ON CONFLICT (user_id) DO UPDATE SET
             license_type = EXCLUDED.license_type,
             features = COALESCE($3::jsonb, user_licenses.features),
             resource_limits = COALESCE($4::jsonb, user_licenses.resource_limits),
             updated_at = now()`,
          [
            userId,
            license.type,
            license.features ? JSON.stringify(license.features) : null,
            license.resourceLimits ? JSON.stringify(license.resourceLimits) : null,
          ],
        );
        return rowCount > 0;
      });
    },

    /**
     * Disables (ending every session and voiding every pending channel link code) or re-enables a user. False when the
     * user does not exist; LAST_ADMIN when disabling would leave no enabled administrator.
     */
    async setDisabled(userId: string, disabled: boolean, actor?: string): Promise<boolean> {
      const apply = async (tx: Queryable) => {
        const { rowCount } = await tx.query(
          `UPDATE users SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) ELSE NULL END,
                  updated_at = now()
            WHERE id = $1`,
          [userId, disabled],
        );
        if (rowCount > 0 && disabled) {
          await tx.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
          await voidLinkCodes(tx, userId);
        }
        return rowCount > 0;
      };
      return disabled ? keepingAnAdmin(db, userId, apply, actor) : asAdmin(db, actor, userId, apply);
    },

    /** False when the user does not exist; LAST_ADMIN when a demotion would leave no enabled administrator. */
    async setRole(userId: string, role: 'admin' | 'user', actor?: string): Promise<boolean> {
      const apply = async (tx: Queryable) => {
        const { rowCount } = await tx.query('UPDATE users SET role = $2, updated_at = now() WHERE id = $1', [
          userId,
          role,
        ]);
        return rowCount > 0;
      };
      return role === 'admin' ? asAdmin(db, actor, userId, apply) : keepingAnAdmin(db, userId, apply, actor);
    },

    /** Ends every session of the user and voids their pending channel link codes; returns the sessions ended. */
    async revokeAllSessions(userId: string, actor?: string): Promise<number> {
      return asAdmin(db, actor, null, async (tx) => {
        const { rowCount } = await tx.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
        await voidLinkCodes(tx, userId);
        return rowCount;
      });
    },

    /** Replaces a user's allow list (empty: no per-user restriction). False when the user does not exist. */
    async setIpAllowlist(userId: string, cidrs: readonly string[], actor?: string): Promise<boolean> {
      return asAdmin(db, actor, userId, (tx) => writeIpAllowlist(tx, userId, cidrs));
    },

    /**
     * Deletes a user and everything of theirs (ON DELETE CASCADE; their sessions end through the trigger). LAST_ADMIN
     * for the last enabled administrator.
     */
    async deleteUser(userId: string, actor?: string): Promise<boolean> {
      return deleteUser(db, userId, actor);
    },

    async linkChannel(userId: string, channel: string, channelUserId: string): Promise<'linked' | 'taken' | 'no_user'> {
      const { rowCount } = await db.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id)
         SELECT id, $2, $3 FROM users WHERE id = $1
         ON CONFLICT (channel_type, channel_user_id) DO NOTHING`,
        [userId, channel, channelUserId],
      );
      if (rowCount > 0) return 'linked';
      const exists = await db.query('SELECT 1 FROM users WHERE id = $1', [userId]);
      if (exists.rows.length === 0) return 'no_user';
      const mine = await db.query(
        'SELECT 1 FROM user_channel_links WHERE user_id = $1 AND channel_type = $2 AND channel_user_id = $3',
        [userId, channel, channelUserId],
      );
      return mine.rows.length > 0 ? 'linked' : 'taken';
    },

    /** Grants the admin role to the configured emails whose address is verified (at start). Returns how many changed. */
    async promoteAdmins(emails: readonly string[]): Promise<number> {
      if (emails.length === 0) return 0;
      const { rowCount } = await db.query(
        `UPDATE users SET role = 'admin' WHERE lower(email) = ANY($1::text[]) AND email_verified AND role <> 'admin'`,
        [emails.map((e) => e.trim().toLowerCase())],
      );
      return rowCount;
    },
  };
}

export type AdminStore = ReturnType<typeof createAdminStore>;

/**
 * Ends all the user's sessions but `keepSessionId` (all, when null) and voids their pending channel link codes, in the
 * caller's transaction; the sessions trigger announces each end to every process. Returns the number ended.
 */
export async function endOtherSessions(tx: Queryable, userId: string, keepSessionId: string | null): Promise<number> {
  const { rowCount } = await tx.query(
    'DELETE FROM sessions WHERE user_id = $1 AND ($2::text IS NULL OR id <> $2::text)',
    [userId, keepSessionId],
  );
  await voidLinkCodes(tx, userId);
  return rowCount;
}

/**
 * Voids the user's pending channel link codes, in its own statement after the one that deleted sessions: a link code
 * is issued only while its session holds (FOR SHARE, until the code commits), so the session DELETE waits for a code
 * being issued, and this statement, with a snapshot taken after that wait, sees the code and deletes it. In one
 * statement with the DELETE, the codes' snapshot would predate the wait and miss it.
 */
async function voidLinkCodes(tx: Queryable, userId: string): Promise<void> {
  await tx.query('DELETE FROM channel_link_codes WHERE user_id = $1', [userId]);
}
