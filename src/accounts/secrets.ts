import { createHash, randomBytes } from 'node:crypto';

/** A secret we hand out: 256 bits from the CSPRNG, URL-safe (43 characters). */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * What we store instead of the secret. A SHA-256 of a 256-bit random value needs no salt or slow hash, and looking
 * it up by hash compares nothing secret-dependent in our code (the index compares hashes, not the secret).
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The shape of newSecret(): anything else is refused before touching the database. */
export const SECRET_PATTERN = '^[A-Za-z0-9_-]{43}$';
