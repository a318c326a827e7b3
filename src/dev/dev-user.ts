import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Database } from '../db/index.js';
import type { PasswordHasher } from '../passwords/index.js';

export const DEV_USER_ID = 'dev-user-001';

/**
 * The design's development user (dev@example.com, id dev-user-001, pro license), created at start when missing,
 * never in production. Its password comes from the secrets file, or is generated and returned so the caller can print
 * it once; an existing user is left as it is.
 */
export async function ensureDevUser(
  config: Config,
  db: Database,
  hasher: PasswordHasher,
): Promise<{ created: boolean; generatedPassword: string | null }> {
  if (config.production || !config.dev_user.enabled) return { created: false, generatedPassword: null };
  const { rows } = await db.query('SELECT 1 FROM users WHERE id = $1 OR lower(email) = lower($2)', [
    DEV_USER_ID,
    config.dev_user.email,
  ]);
  if (rows.length > 0) return { created: false, generatedPassword: null };

  const generated = config.dev_user.password ? null : randomBytes(12).toString('base64url');
  const hash = await hasher.hash(config.dev_user.password || (generated as string));
  const license = Object.hasOwn(config.licenses.types, config.dev_user.license)
    ? config.dev_user.license
    : config.licenses.default_type;
  const created = await db.transaction(async (tx) => {
    const inserted = await tx.query(
      `INSERT INTO users (id, email, email_verified, name) VALUES ($1, $2, true, 'Dev User') ON CONFLICT DO NOTHING`,
      [DEV_USER_ID, config.dev_user.email.toLowerCase()],
    );
    if (inserted.rowCount === 0) return false; // another process created it first
    await tx.query(
      `INSERT INTO user_credentials (id, user_id, account_id, provider_id, password_hash)
       VALUES ($1, $2, $2, 'credential', $3)`,
      [`cred_${DEV_USER_ID}`, DEV_USER_ID, hash],
    );
    await tx.query(
      `INSERT INTO user_licenses (user_id, license_type) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING`,
      [DEV_USER_ID, license],
    );
    return true;
  });
  return { created, generatedPassword: created ? generated : null };
}
