import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** The fields the Telegram Login Widget hands to the page (https://core.telegram.org/widgets/login). */
export interface WidgetData {
  id: number | string;
  auth_date: number | string;
  hash: string;
  [field: string]: string | number;
}

export type WidgetVerdict = { ok: true; telegramUserId: string } | { ok: false; reason: 'signature' | 'expired' };

/**
 * Checks Login Widget data: the hash is HMAC-SHA256 over the other fields as sorted `key=value` lines, keyed with
 * SHA-256 of the bot token; auth_date must be at most maxAgeSeconds old (and not from the future beyond a minute of
 * clock skew). Every received field is covered, so nothing can be added or altered.
 */
export function verifyWidgetData(
  data: WidgetData,
  botToken: string,
  maxAgeSeconds: number,
  now = Date.now(),
): WidgetVerdict {
  const { hash, ...fields } = data;
  const checkString = Object.keys(fields)
    .sort()
    .map((key) => `${key}=${fields[key]}`)
    .join('\n');
  const secret = createHash('sha256').update(botToken).digest();
  const expected = createHmac('sha256', secret).update(checkString).digest();
  const given = /^[0-9a-f]{64}$/i.test(hash) ? Buffer.from(hash, 'hex') : Buffer.alloc(0);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'signature' };
  const authDate = Number(data.auth_date);
  const age = now / 1000 - authDate;
  if (!Number.isFinite(authDate) || age > maxAgeSeconds || age < -60) return { ok: false, reason: 'expired' };
  return { ok: true, telegramUserId: String(data.id) };
}

/** Signs widget data as Telegram does (tests, and documentation of the scheme). */
export function signWidgetData(fields: Record<string, string | number>, botToken: string): string {
  const checkString = Object.keys(fields)
    .sort()
    .map((key) => `${key}=${fields[key]}`)
    .join('\n');
  const secret = createHash('sha256').update(botToken).digest();
  return createHmac('sha256', secret).update(checkString).digest('hex');
}
