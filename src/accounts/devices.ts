import { createHash, randomBytes } from 'node:crypto';
import { generateId } from '../auth/ids.js';
import type { Queryable } from '../db/index.js';
import { deviceName } from './user-agent.js';

/**
 * Devices: what a client keeps across sign-ins. The key is a bearer secret ("remember this device"): minted by the
 * gateway with a CSPRNG (or chosen by a native client, at least 22 URL-safe characters), sent back as the
 * X-Device-Id header and an HttpOnly cookie, and stored only as its SHA-256. A key that is not this user's yet becomes
 * a new device of this user, so knowing another user's key gains nothing.
 */
export const DEVICE_HEADER = 'x-device-id';
/**
 * The device cookie's name. With Secure cookies (https) it carries the __Host- prefix: a browser keeps such a cookie
 * only when this host set it (Secure, Path=/, no Domain), so a sibling subdomain or a plain-http attacker cannot plant
 * a key of its choosing, have the victim's sessions filed under it and, once the victim trusts it, skip 2FA. Over
 * plain http (development) browsers refuse the prefix, so the cookie goes without it.
 */
export const deviceCookieName = (secureCookies: boolean) =>
  secureCookies ? '__Host-gateway_device' : 'gateway_device';
/** 400 days: the longest lifetime browsers keep a cookie (RFC 6265bis). */
export const DEVICE_COOKIE_MAX_AGE = 400 * 24 * 3600;
const KEY_SHAPE = /^[A-Za-z0-9_-]{22,128}$/;
const cookiePattern = (name: string) => new RegExp(`(?:^|;\\s*)${name}=([^;]*)`);
const COOKIE = { secure: cookiePattern(deviceCookieName(true)), plain: cookiePattern(deviceCookieName(false)) };

export function mintDeviceKey(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The device key a request carries (X-Device-Id, else the cookie), or null when absent or malformed. Only the access
 * plugin, which knows the deployment is plain http, reads the unprefixed cookie; everyone else reads the __Host- one
 * (or, on a sign-in route, the header the access plugin set from the cookie it trusts).
 */
export function deviceKeyOf(
  headers: { get(name: string): string | null } | Record<string, unknown>,
  secureCookies = true,
): string | null {
  const read = (name: string): string | null => {
    if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name);
    const v = (headers as Record<string, unknown>)[name];
    return typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : null;
  };
  const header = read(DEVICE_HEADER)?.trim();
  if (header && KEY_SHAPE.test(header)) return header;
  const cookie = (secureCookies ? COOKIE.secure : COOKIE.plain).exec(read('cookie') ?? '')?.[1];
  return cookie && KEY_SHAPE.test(cookie) ? cookie : null;
}

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

/**
 * The row a device key makes: a fresh id (kept only when the key is new for the user), the key's SHA-256 (the key
 * itself is never stored) and a name from the user agent. For statements that file the device themselves: the
 * password sign-in writes it with its session and audit row in one statement.
 */
export function deviceRowOf(key: string, userAgent: string | null) {
  return { id: generateId('device'), keyHash: hashKey(key), name: deviceName(userAgent) };
}

export interface DeviceRow {
  id: string;
  name: string;
  userAgent: string | null;
  trustedUntil: Date | null;
  createdAt: Date;
  lastSeenAt: Date;
}

interface Row {
  id: string;
  name: string;
  user_agent: string | null;
  trusted_until: Date | string | null;
  created_at: Date | string;
  last_seen_at: Date | string;
}

const toDevice = (r: Row): DeviceRow => ({
  id: r.id,
  name: r.name,
  userAgent: r.user_agent,
  trustedUntil: r.trusted_until ? new Date(r.trusted_until) : null,
  createdAt: new Date(r.created_at),
  lastSeenAt: new Date(r.last_seen_at),
});

export function createDeviceStore(db: Queryable) {
  return {
    async list(userId: string): Promise<DeviceRow[]> {
      const { rows } = await db.query<Row>(
        `SELECT id, name, user_agent, trusted_until, created_at, last_seen_at
           FROM devices WHERE user_id = $1 ORDER BY last_seen_at DESC`,
        [userId],
      );
      return rows.map(toDevice);
    },

    /** Renames and/or trusts a device of this user; null when it is not theirs (or does not exist). */
    async update(
      userId: string,
      deviceId: string,
      change: { name?: string; trustedDays?: number | null },
    ): Promise<DeviceRow | null> {
      const { rows } = await db.query<Row>(
        `UPDATE devices SET
            name = COALESCE($3, name),
            trusted_until = CASE WHEN $4::int IS NULL THEN trusted_until
                                 WHEN $4::int = 0 THEN NULL
                                 ELSE now() + make_interval(days => $4::int) END
          WHERE id = $1 AND user_id = $2
          RETURNING id, name, user_agent, trusted_until, created_at, last_seen_at`,
        [deviceId, userId, change.name ?? null, change.trustedDays === undefined ? null : (change.trustedDays ?? 0)],
      );
      return rows[0] ? toDevice(rows[0]) : null;
    },

    /** Removes a device of this user; its sessions go with it (ON DELETE CASCADE, so the sessions trigger fires). */
    async remove(userId: string, deviceId: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM devices WHERE id = $1 AND user_id = $2', [deviceId, userId]);
      return rowCount > 0;
    },

    /**
     * Whether the device this key names is one of this user's and currently trusted. For two-factor: a trusted device
     * skips the second-factor prompt until trusted_until.
     */
    async isTrusted(userId: string, key: string | null): Promise<boolean> {
      if (!key || !KEY_SHAPE.test(key)) return false;
      const { rows } = await db.query(
        'SELECT 1 FROM devices WHERE user_id = $1 AND key_hash = $2 AND trusted_until > now()',
        [userId, hashKey(key)],
      );
      return rows.length > 0;
    },
  };
}

export type DeviceStore = ReturnType<typeof createDeviceStore>;

/** For the two-factor module: is the device this request carries trusted for this user? */
export function isDeviceTrusted(
  db: Queryable,
  userId: string,
  headers: { get(name: string): string | null } | Record<string, unknown>,
): Promise<boolean> {
  return createDeviceStore(db).isTrusted(userId, deviceKeyOf(headers));
}
