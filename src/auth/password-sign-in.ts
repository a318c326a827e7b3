import { generateRandomString } from 'better-auth/crypto';
import { deviceKeyOf, deviceRowOf } from '../accounts/devices.js';
import { AUDIT_USER_AGENT_MAX, type AuditOrigin } from '../audit/index.js';
import type { Config } from '../config/index.js';
import type { Database } from '../db/index.js';
import { AppError } from '../errors/index.js';
import type { PasswordHasher } from '../passwords/index.js';
import type { SessionGuardHooks } from './better-auth.js';
import type { NewSession } from './engine.js';
import { generateId } from './ids.js';

interface SignInRow {
  id: string;
  email_verified: boolean;
  two_factor_enabled: boolean;
  disabled: boolean;
  ip_allowlist: string[] | null;
  password_hash: string | null;
  /** The request's device key names a device of this user that is trusted (auth.trusted_device_days). */
  device_trusted: boolean;
}

export interface PasswordSignInDeps {
  config: Config;
  db: Database;
  hasher: PasswordHasher;
  sessionGuard?: SessionGuardHooks;
  /** The client's IP as Better Auth records it for a session (its getIP: the gateway's header, normalised). */
  clientIp(headers: Headers): string | null;
}

/**
 * POST /auth/login's password sign-in in two statements of its own, where the path through Better Auth's endpoint took
 * five (user, credentials, the guard's read of the user, the session insert, our re-read of the session by token), and
 * the device and audit rows two more: one joined read of the user, their credential and what the sign-in guard checks;
 * after the password, one statement that writes the session, files it under its device and records login.success.
 * The session row is the one Better Auth writes (its token format, expiry and fields), so
 * Better Auth's cookie routes, our tokens and revocation treat it alike. Same rules as Better Auth's sign-in:
 * - an unknown email, or an account without a password, costs one argon2 verification too and answers like a wrong
 *   password (INVALID_CREDENTIALS): the answer and its timing do not tell whether the address has an account;
 * - an unverified email is refused (EMAIL_NOT_VERIFIED) when verification is required, after the password is checked;
 * - the sign-in guard (disabled account, IP restrictions, admin emails) runs as for every session; the device is filed
 *   here, as the guard files Better Auth's sessions (devices.ts).
 * Accounts with two-factor authentication return `null`: the caller takes Better Auth's path, which issues the 2FA
 * challenge (its own verification of the password runs again; a wrong password never gets that far). Unless the
 * request carries the key of a device the user has marked trusted: then the session is made here, and its audit row
 * says `trustedDevice: true`. When 2FA is turned on or off, or that trust withdrawn, while the password is being
 * verified, `null` too.
 */
export function createPasswordSignIn({ config, db, hasher, sessionGuard, clientIp }: PasswordSignInDeps) {
  const expiresInMs = config.auth.session.expires_in * 1000;

  /**
   * Why no session was written after a right password: the account was deleted (answered as an unknown address is),
   * disabled, or its password changed, meanwhile; null when none, so 2FA was turned on or off, or the device's trust
   * withdrawn: Better Auth's path decides then.
   */
  async function refusalAfterVerify(userId: string, passwordHash: string): Promise<AppError | null> {
    const { rows } = await db.query<{ disabled: boolean; same_password: boolean }>(
      `SELECT u.disabled_at IS NOT NULL AS disabled, c.password_hash IS NOT DISTINCT FROM $2 AS same_password
         FROM users u
         LEFT JOIN user_credentials c ON c.user_id = u.id AND c.provider_id = 'credential' AND c.account_id = u.id
        WHERE u.id = $1`,
      [userId, passwordHash],
    );
    const account = rows[0];
    if (!account) return new AppError('INVALID_CREDENTIALS');
    if (account.disabled) return new AppError('ACCOUNT_DISABLED');
    return account.same_password ? null : new AppError('INVALID_CREDENTIALS');
  }

  return async function signIn(
    input: { email: string; password: string },
    headers: Headers,
    origin: AuditOrigin,
  ): Promise<NewSession | null> {
    // Longer than any password can be (the hasher's cap, in UTF-16 units as Better Auth counts when one is set; the
    // route's schema counts code points, so 100 emoji pass it): refused before the lookup, so a known address is not
    // answered sooner than an unknown one, whose dummy hash would otherwise run.
    if (input.password.length > hasher.maxLength) throw new AppError('INVALID_CREDENTIALS');
    const deviceKey = deviceKeyOf(headers);
    const userAgent = headers.get('user-agent') || null;
    const device = deviceKey ? deviceRowOf(deviceKey, userAgent) : null;
    const { rows } = await db.query<SignInRow>(
      `SELECT u.id, u.email_verified, u.two_factor_enabled, u.disabled_at IS NOT NULL AS disabled, u.ip_allowlist,
              c.password_hash,
              EXISTS (SELECT 1 FROM devices d WHERE d.user_id = u.id AND d.key_hash = $2 AND d.trusted_until > now())
                AS device_trusted
         FROM users u
         LEFT JOIN user_credentials c ON c.user_id = u.id AND c.provider_id = 'credential' AND c.account_id = u.id
        WHERE u.email = $1`,
      [input.email.toLowerCase(), device?.keyHash ?? null],
    );
    const user = rows[0];
    if (!user?.password_hash) {
      // One argon2 computation either way (hashing costs what verifying does), as Better Auth does.
      await hasher.hash(input.password);
      throw new AppError('INVALID_CREDENTIALS');
    }
    if (!(await hasher.verify(user.password_hash, input.password))) throw new AppError('INVALID_CREDENTIALS');
    // A device the user marked trusted (after a recent sign-in, which with 2FA on took a code) skips the prompt.
    const secondFactorSkipped = user.two_factor_enabled && user.device_trusted;
    if (user.two_factor_enabled && !secondFactorSkipped) return null;
    if (config.auth.require_email_verification && !user.email_verified) throw new AppError('EMAIL_NOT_VERIFIED');

    const ip = clientIp(headers) || undefined;
    await sessionGuard?.beforeSession({
      userId: user.id,
      ip,
      userAgent,
      user: { disabled: user.disabled, ipAllowlist: user.ip_allowlist },
    });
    const now = new Date();
    const session = {
      userId: user.id,
      sessionId: generateId('session'),
      expiresAt: new Date(now.getTime() + expiresInMs),
    };
    // One statement, so one round trip and one commit after the password: the session (only while the account is
    // still enabled and the password verified is still its password: it may have been disabled, or its password changed
    // or removed, and its sessions deleted, while the password was being verified, which can take seconds behind a long
    // hash queue), filed under its device (created on first use, as the sign-in guard files other sign-ins' sessions), and its login.success audit row.
    // They commit together: no session without its audit row. FOR SHARE on the user and the credential: a disable, a
    // password change or reset, or a reclaim by a magic link in flight (an UPDATE or DELETE of those rows, then a DELETE
    // of the sessions) is waited for and then seen, so it cannot miss a session written between the two.
    // Likewise the 2FA state read before the password (here 2FA is on exactly when its prompt is skipped) and, when
    // skipped, the device's trust: an untrust or a removal of the device in flight is waited for (FOR NO KEY UPDATE,
    // as the upsert below takes it anyway: two sign-ins from one device holding it FOR SHARE would deadlock there).
    // A join, not an EXISTS: a subquery would lock the device before the user, the reverse of a 2FA toggle's order.
    const trustedDevice = secondFactorSkipped
      ? 'JOIN devices d ON d.user_id = u.id AND d.key_hash = $9 AND d.trusted_until > now()'
      : '';
    const { rows: created } = await db.query<{ id: string }>(
      `WITH account AS (
         SELECT u.id FROM users u
           JOIN user_credentials c ON c.user_id = u.id AND c.provider_id = 'credential' AND c.account_id = u.id
           ${trustedDevice}
          WHERE u.id = $3 AND u.disabled_at IS NULL AND c.password_hash = $16 AND u.two_factor_enabled = $17
            FOR SHARE OF u, c${secondFactorSkipped ? ' FOR NO KEY UPDATE OF d' : ''}
       ), device AS (
         INSERT INTO devices (id, user_id, key_hash, name, user_agent)
         SELECT $8, id, $9, $10, $11 FROM account WHERE $9::text IS NOT NULL
         ON CONFLICT (user_id, key_hash) DO UPDATE SET last_seen_at = now(), user_agent = EXCLUDED.user_agent
         RETURNING id
       ), session AS (
         INSERT INTO sessions (id, token, user_id, expires_at, ip_address, user_agent, created_at, updated_at, device_id)
         SELECT $1, $2, id, $4, $5, $6, $7, $7, (SELECT id FROM device) FROM account
         RETURNING id
       ), audit AS (
         INSERT INTO auth_audit_log (event, user_id, session_id, channel, ip_address, user_agent, details)
         SELECT 'login.success', $3, id, $12, $13, $14, $15::jsonb FROM session
       )
       SELECT id FROM session`,
      [
        session.sessionId,
        // Better Auth's session token: 32 characters of [a-zA-Z0-9] (its generateId(32)).
        generateRandomString(32, 'a-z', 'A-Z', '0-9'),
        user.id,
        session.expiresAt,
        ip ?? '',
        userAgent ?? '',
        now,
        device?.id ?? null,
        device?.keyHash ?? null,
        device?.name ?? null,
        userAgent,
        origin.channel,
        origin.ip,
        origin.userAgent?.slice(0, AUDIT_USER_AGENT_MAX) ?? null,
        JSON.stringify(secondFactorSkipped ? { method: 'password', trustedDevice: true } : { method: 'password' }),
        user.password_hash,
        secondFactorSkipped,
      ],
    );
    if (created.length === 0) {
      const refusal = await refusalAfterVerify(user.id, user.password_hash);
      if (refusal) throw refusal;
      return null;
    }
    await sessionGuard?.afterSession({
      sessionId: session.sessionId,
      userId: user.id,
      userAgent,
      headers,
      deviceFiled: true,
    });
    return session;
  };
}
