import type { Queryable } from '../db/index.js';
import { bareAddress } from '../ratelimit/client-key.js';

/** Every event the audit log knows. Names are API (GET /auth/audit returns them): add, never rename. */
export type AuditEvent =
  | 'signup'
  | 'login.success'
  | 'login.failure'
  | 'logout'
  | 'lockout'
  | 'password.reset_requested'
  | 'password.reset_completed'
  | 'password.changed'
  | 'email.verified'
  | 'passkey.added'
  | 'passkey.used'
  | 'passkey.removed'
  | 'passkey.refused'
  | 'twofactor.enabled'
  | 'twofactor.disabled'
  | 'twofactor.used'
  | 'twofactor.failed'
  | 'channel.linked'
  | 'channel.unlinked'
  | 'session.revoked'
  | 'rate_limit.hit'
  | 'ip.refused'
  | 'admin.action'
  | 'email.verification_sent'
  | 'account.deleted'
  | 'account.reclaimed'
  | 'channel.link_refused'
  | 'ip_allowlist.changed'
  | 'device.updated'
  | 'device.removed';

/** Where an event came from: the channel ('rest', 'telegram'), the client's IP and user agent. */
export interface AuditOrigin {
  channel: string | null;
  ip: string | null;
  userAgent: string | null;
}

/** Where an HTTP request came from: the REST channel, the client's IP (as Fastify resolved it), its user agent. */
export function restOrigin(request: { ip: string; headers: Record<string, unknown> }): AuditOrigin {
  const ua = request.headers['user-agent'];
  return { channel: 'rest', ip: request.ip, userAgent: typeof ua === 'string' ? ua : null };
}

/** User agents are kept to this many characters in the log (a header can be kilobytes). */
export const AUDIT_USER_AGENT_MAX = 512;

export interface AuditEntry {
  event: AuditEvent;
  userId?: string | null;
  sessionId?: string | null;
  channel?: string | null;
  ip?: string | null;
  userAgent?: string | null;
  /** Context without secrets: reasons, method names, ids. Keys that name secrets are dropped as a second guard. */
  details?: Record<string, unknown>;
}

export interface AuditRow {
  id: string;
  createdAt: string;
  event: AuditEvent;
  userId: string | null;
  sessionId: string | null;
  channel: string | null;
  ip: string | null;
  userAgent: string | null;
  details: Record<string, unknown>;
}

export interface AuditLog {
  /** Writes one event. Never throws: a failing audit write is logged, not turned into a failed login. */
  record(entry: AuditEntry): Promise<void>;
  /**
   * An event another statement wrote (the password sign-in writes its login.success with the session): the observers
   * (the sign-in metric) hear of it as of an event written here. Nothing is written.
   */
  noteWritten(entry: AuditEntry): void;
  /** A user's own events, newest first; `before` is the id of the last row of the previous page. */
  listForUser(userId: string, page: { limit: number; before?: string }): Promise<AuditRow[]>;
}

// Detail keys that could hold a secret are dropped. ("passkey" and "reason" are fine; "password", "code" are not.)
const SECRET_KEY = /password|passphrase|secret|token|cookie|authorization|credential|otp|^code$|^backupCodes?$/i;

/** A UTF-16 surrogate that is not half of a pair (with the `u` flag a pair reads as one code point and does not match). */
const LONE_SURROGATE = /\p{Surrogate}/gu;

/** `text` with each lone surrogate replaced by U+FFFD, as `String.prototype.toWellFormed` (not in the ES2023 lib) does. */
const wellFormed = (text: string) => text.replace(LONE_SURROGATE, '\uFFFD');

/**
 * `details` as JSON that jsonb takes. JSON.stringify writes a lone surrogate as "\ud800", which PostgreSQL refuses,
 * and the whole row would be lost (a provider's error cut inside an emoji, a Telegram name): such a string, value or
 * key, is stored with U+FFFD in its place.
 */
function detailsJson(details: Record<string, unknown>): string {
  return JSON.stringify(details, (_key, value: unknown) => {
    if (typeof value === 'string') return wellFormed(value);
    if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
    const keys = Object.keys(value);
    if (keys.every((k) => wellFormed(k) === k)) return value;
    return Object.fromEntries(keys.map((k) => [wellFormed(k), (value as Record<string, unknown>)[k]]));
  });
}

/**
 * The audit log on `db`. `observe` hears of every event, written here or noted (noteWritten), before its write
 * completes, and whether or not it succeeds: the sign-in metric counts attempts from the login events, so that every
 * sign-in route counts the way it audits, once.
 */
export function createAuditLog(
  db: Queryable,
  log: { error(obj: object, msg: string): void },
  observe: (entry: AuditEntry) => void = () => {},
): AuditLog {
  // An observer's failure is logged, never the caller's: record() does not throw.
  const notify = (entry: AuditEntry) => {
    try {
      observe(entry);
    } catch (err) {
      log.error({ err: { message: (err as Error).message }, event: entry.event }, 'audit observer failed');
    }
  };
  return {
    noteWritten: notify,
    async record(entry) {
      notify(entry);
      const details = Object.fromEntries(Object.entries(entry.details ?? {}).filter(([k]) => !SECRET_KEY.test(k)));
      try {
        await db.query(
          `INSERT INTO auth_audit_log (event, user_id, session_id, channel, ip_address, user_agent, details)
           SELECT $1, (SELECT id FROM users WHERE id = $2), $3, $4, $5, $6, $7::jsonb`,
          [
            entry.event,
            entry.userId ?? null,
            entry.sessionId ?? null,
            entry.channel ?? null,
            entry.ip == null ? null : bareAddress(entry.ip),
            entry.userAgent == null ? null : wellFormed(entry.userAgent.slice(0, AUDIT_USER_AGENT_MAX)),
            detailsJson(details),
          ],
        );
      } catch (err) {
        log.error({ err: { message: (err as Error).message }, event: entry.event }, 'audit write failed');
      }
    },
    async listForUser(userId, { limit, before }) {
      const { rows } = await db.query<{
        id: string;
        created_at: Date | string;
        event: AuditEvent;
        user_id: string | null;
        session_id: string | null;
        channel: string | null;
        ip_address: string | null;
        user_agent: string | null;
        details: Record<string, unknown>;
      }>(
        `SELECT id, created_at, event, user_id, session_id, channel, ip_address, user_agent, details
           FROM auth_audit_log
          WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2::bigint)
          ORDER BY id DESC
          LIMIT $3`,
        [userId, before ?? null, limit],
      );
      return rows.map((r) => ({
        id: String(r.id),
        createdAt: new Date(r.created_at).toISOString(),
        event: r.event,
        userId: r.user_id,
        sessionId: r.session_id,
        channel: r.channel,
        ip: r.ip_address,
        userAgent: r.user_agent,
        details: r.details,
      }));
    },
  };
}
