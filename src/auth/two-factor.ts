import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { APIError } from 'better-auth/api';
import { symmetricDecrypt } from 'better-auth/crypto';
import * as OTPAuth from 'otpauth';
import { endOtherSessions } from '../accounts/accounts.store.js';
import { type Database, isUniqueViolation } from '../db/index.js';
import { AppError } from '../errors/index.js';
import type { BetterAuthInstance } from './better-auth.js';
import { generateId } from './ids.js';

/**
 * Two-factor (TOTP) on Better Auth's twoFactor plugin. The plugin owns enrolment (secret and backup codes encrypted with
 * auth.secret), the pending sign-in (a signed, single-use, expiring challenge bound to the user and stored hashed), the
 * per-challenge attempt budget (5) and the per-account lockout. We add what the plugin does only with cookie sessions
 * or not at all: confirming and disabling without replacing the caller's session (our JWT names it), checking a code
 * for re-authentication against the same lockout counters, accepting each time step's code once per account, on
 * every path (the plugin's sign-in step does not), and counting each code toward the lockout before it is compared
 * (the plugin reads the lock before and counts after: guesses sent at once were all compared).
 */

/** The plugin's signed cookie carrying the pending sign-in; its value is our challengeToken. */
const CHALLENGE_COOKIE = 'better-auth.two_factor';
const BASE32_PREFIX = 'base32:';
// RFC 6238 defaults, as the plugin uses them: 6 digits, 30-second steps, SHA-1; one step of clock skew either way.
const TOTP = { digits: 6, period: 30, algorithm: 'SHA1' } as const;
const SKEW_STEPS = 1;

export type CodeCheck = 'ok' | 'invalid' | 'locked' | 'not_enabled';

/** A confirmation's answer: 2FA is on and the user's other sessions ended, or the code was refused. */
export type Confirmation =
  | { result: 'ok'; endedSessions: number }
  | { result: 'invalid' }
  | { result: 'locked' }
  | { result: 'not_enabled' };

/** An attempt counted toward the lockout (`locking`: it set the lock), or refused: locked for `retryAfter` seconds. */
type Attempt = { locked: false; locking: boolean } | { locked: true; retryAfter: number };

/**
 * TWO_FACTOR_LOCKED for a challenge whose 5 attempts are spent (the plugin's TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE), the
 * account not locked: a new sign-in works at once. /auth/2fa/verify answers it as TWO_FACTOR_LOCKED (README); Better
 * Auth's own routes, served at /api/auth, answer it as Better Auth does (mount.plugin.ts, codeRefusal).
 */
export class ChallengeExhausted extends AppError {
  constructor(options?: { cause?: unknown }) {
    super('TWO_FACTOR_LOCKED', undefined, {}, options);
  }
}

export interface TwoFactorEngine {
  /**
   * Starts enrolment (not active until confirm()), replacing a pending one; requires the password. Answers the
   * enrolment stored when it answers: of enrolments started at once, the answer given last is the one that stays.
   */
  enable(
    userId: string,
    sessionToken: string,
    password: string,
  ): Promise<{ otpauthUri: string; backupCodes: string[] }>;
  /**
   * Activates a pending enrolment with a first code, and ends every other session of the user (all but keepSessionId)
   * and voids their pending channel link codes: none of them passed a second factor. 'invalid' when the enrolment
   * was replaced (a new enable) after the code was checked.
   */
  confirm(userId: string, code: string, keepSessionId: string | null): Promise<Confirmation>;
  /** Turns 2FA off: deletes the secret and backup codes. */
  disable(userId: string): Promise<void>;
  isEnabled(userId: string): Promise<boolean>;
  /** A TOTP code of an active enrolment; wrong codes count toward the account lockout. */
  checkCode(userId: string, code: string): Promise<CodeCheck>;
  /** The pending sign-in's challenge from Better Auth's sign-in response cookies, or null. */
  challengeFromCookies(setCookies: string[]): string | null;
  /** The challenge a request's Cookie header carries (Better Auth's own 2FA routes on /api/auth), or null. */
  challengeOfRequest(cookieHeader: string | undefined): string | null;
  /** The user a challenge belongs to (for the audit log), or null when it is not a live challenge. */
  challengeUser(challenge: string): Promise<string | null>;
  /**
   * Completes a pending sign-in with a TOTP or backup code; returns Better Auth's new session token. A TOTP code's time
   * step is used up as check() uses it up: once per account.
   */
  verifyChallenge(
    challenge: string,
    code: string,
    headers: Headers,
  ): Promise<{ sessionToken: string; method: 'totp' | 'backup_code' }>;
  /**
   * Checks a sign-in code before Better Auth's own verify-totp or verify-backup-code route does (served at /api/auth),
   * as verifyChallenge does: returns when the route may complete the sign-in (a right code, a TOTP code's time step
   * used up); throws TWO_FACTOR_INVALID_CODE for a wrong or used code, TWO_FACTOR_LOCKED with retryAfter (seconds) for
   * a locked account, and ChallengeExhausted for a wrong code on a challenge whose attempts are spent.
   */
  claimSignInCode(challenge: string, code: string, method: 'totp' | 'backup_code'): Promise<void>;
}

/** A two_factor row: `secret` as stored (encrypted), `totp` computing its codes. */
interface Enrolment {
  id: string;
  secret: string;
  totp: OTPAuth.TOTP;
  backupCodes: string;
}

export function createTwoFactorEngine(
  auth: BetterAuthInstance,
  db: Database,
  options: { secureCookies: boolean; lockoutThreshold: number; lockoutDuration: number },
): TwoFactorEngine {
  const cookieName = options.secureCookies ? `__Secure-${CHALLENGE_COOKIE}` : CHALLENGE_COOKIE;

  async function totpOf(userId: string, verified: boolean): Promise<Enrolment | null> {
    const { rows } = await db.query<{ id: string; secret: string; backup_codes: string }>(
      'SELECT id, secret, backup_codes FROM two_factor WHERE user_id = $1 AND verified = $2',
      [userId, verified],
    );
    const row = rows[0];
    if (!row) return null;
    const totp = new OTPAuth.TOTP({ ...TOTP, secret: await secretOf(row.secret) });
    return { id: row.id, secret: row.secret, totp, backupCodes: row.backup_codes };
  }

  /** A stored (encrypted) secret as the key the plugin computes codes with. */
  async function secretOf(stored: string): Promise<OTPAuth.Secret> {
    const context = await auth.$context;
    const secret = await symmetricDecrypt({ key: context.secretConfig, data: stored });
    // The plugin keys HMAC with the secret string's bytes (a base32: prefix marks an imported base32 secret).
    const bytes = secret.startsWith(BASE32_PREFIX)
      ? OTPAuth.Secret.fromBase32(secret.slice(BASE32_PREFIX.length).toUpperCase()).bytes
      : new TextEncoder().encode(secret);
    return new OTPAuth.Secret({ buffer: toArrayBuffer(bytes) });
  }

  /** The plugin's enrolment step; a unique violation is retried once (see enable). */
  async function startEnrolment(sessionToken: string, password: string) {
    const call = () =>
      auth.api.enableTwoFactor({
        body: { password },
        headers: new Headers({ authorization: `Bearer ${sessionToken}` }),
      });
    try {
      return await call();
    } catch (err) {
      // Enrolments started at once (a double click): the plugin looks for the user's row, finds none, and inserts one;
      // every insert but the first breaks two_factor.user_id's unique index. The first is committed by now (Better
      // Auth runs single statements, no transaction), so the retry finds the row and replaces its secret and codes,
      // as an enrolment started after it does.
      if (!isUniqueViolation(err)) throw err;
      return await call();
    }
  }

  /**
   * The pending enrolment as stored now, answered in the plugin's form (its URI, with the stored secret). Of enrolments
   * started at once, each replaces the last, in an order the requests cannot know: each answers what is stored after
   * its own write, so the one that answers last answers the enrolment that stays (earlier answers may be replaced).
   */
  async function storedEnrolment(userId: string, uri: string) {
    // A new secret starts with a fresh count: the plugin keeps the replaced enrolment's failures and lock, so wrong
    // confirmations of the old secret would otherwise lock out the new one.
    const { rows } = await db.query<{ secret: string; backup_codes: string }>(
      `UPDATE two_factor SET failed_verification_count = 0, locked_until = NULL
        WHERE user_id = $1 AND NOT verified
        RETURNING secret, backup_codes`,
      [userId],
    );
    const row = rows[0];
    if (!row) {
      // Confirmed in the meantime, with the code of an enrolment started at the same time: it is on now (confirm()
      // gave the row a new id, so this enable's write missed it).
      const { rows: on } = await db.query('SELECT 1 FROM two_factor WHERE user_id = $1 AND verified', [userId]);
      if (on.length > 0) throw new AppError('TWO_FACTOR_ALREADY_ENABLED');
      throw new Error('two-factor enable stored no enrolment');
    }
    const context = await auth.$context;
    const codes: unknown = JSON.parse(await symmetricDecrypt({ key: context.secretConfig, data: row.backup_codes }));
    if (!Array.isArray(codes) || !codes.every((c) => typeof c === 'string')) {
      throw new Error('two-factor backup codes are not a list of strings');
    }
    const query = uri.indexOf('?');
    // Issuer, account, digits and period are the user's and the configuration's, the same for every enrolment; the
    // query is rebuilt as the plugin builds it (URLSearchParams), the secret in its place.
    const params = new URLSearchParams(uri.slice(query + 1));
    params.set('secret', (await secretOf(row.secret)).base32);
    return { otpauthUri: `${uri.slice(0, query)}?${params}`, backupCodes: codes };
  }

  /** Whether a code is one of the unused backup codes (the plugin stores them as JSON, encrypted as the secret is). */
  async function isBackupCode(stored: string, code: string): Promise<boolean> {
    const context = await auth.$context;
    const codes: unknown = JSON.parse(await symmetricDecrypt({ key: context.secretConfig, data: stored }));
    return Array.isArray(codes) && codes.includes(code);
  }

  /** The time step a 6-digit code belongs to, when it is valid now (one step of skew either way), or null. */
  function stepOf(totp: OTPAuth.TOTP, code: string): number | null {
    if (!/^\d{6}$/.test(code)) return null;
    const now = Date.now(); // one clock for both: a step boundary between two readings would name the wrong step
    const delta = totp.validate({ token: code, timestamp: now, window: SKEW_STEPS });
    return delta === null ? null : Math.floor(now / 1000 / TOTP.period) + delta;
  }

  /**
   * Each time step's code is accepted once per account (RFC 6238 §5.2): a code seen in transit cannot be replayed, and
   * parallel uses of one code yield one success. One conditional UPDATE: of racing claims exactly one wins.
   */
  async function claimStep(id: string, step: number, resetFailures: boolean): Promise<boolean> {
    const { rowCount } = await db.query(
      `UPDATE two_factor
          SET last_used_step = $2,
              failed_verification_count = CASE WHEN $3::boolean THEN 0 ELSE failed_verification_count END,
              locked_until = CASE WHEN $3::boolean THEN NULL ELSE locked_until END
        WHERE id = $1 AND (last_used_step IS NULL OR last_used_step < $2)`,
      [id, step, resetFailures],
    );
    return rowCount > 0;
  }

  /**
   * Counts an attempt as a wrong code before its code is compared: whether this attempt locked the account (it was the
   * lockout_threshold-th), or, when the account is locked, the seconds left on the lock (for Retry-After). One atomic
   * statement counts: of guesses sent at once, only as many as the threshold leaves are compared, the rest are refused
   * unseen. A right code takes its count back. A lock that has run out starts a fresh count (as the plugin does on its
   * sign-in path).
   */
  async function reserveAttempt(id: string): Promise<Attempt> {
    const { rows } = await db.query<{ locking: boolean }>(
      `WITH current AS (
         SELECT id, CASE WHEN locked_until IS NULL THEN failed_verification_count ELSE 0 END + 1 AS failures
           FROM two_factor WHERE id = $1 AND NOT coalesce(locked_until > now(), false) FOR UPDATE)
       UPDATE two_factor t
          SET failed_verification_count = c.failures,
              locked_until = CASE WHEN c.failures >= $2 THEN now() + make_interval(secs => $3) END
         FROM current c
        WHERE t.id = c.id
        RETURNING c.failures >= $2 AS locking`,
      [id, options.lockoutThreshold, options.lockoutDuration],
    );
    if (rows[0]) return { locked: false, locking: rows[0].locking };
    // Locked: read after the count, so a lock set by a concurrent attempt is seen. One that ran out in between (or a
    // row deleted by a disable) leaves nothing to wait for but this second.
    const { rows: lock } = await db.query<{ seconds: number | null }>(
      'SELECT ceil(extract(epoch FROM locked_until - now()))::int AS seconds FROM two_factor WHERE id = $1',
      [id],
    );
    return { locked: true, retryAfter: Math.max(1, lock[0]?.seconds ?? 1) };
  }

  /**
   * Takes back one attempt's count: a sign-in code that was right (the plugin clears the count when it completes the
   * sign-in), or a wrong one the plugin counted a second time. The lock goes too when the count is then under the
   * threshold: the attempt set it, or the plugin did, one code early, counting a code already counted here.
   */
  async function releaseAttempt(id: string): Promise<void> {
    await db.query(
      `UPDATE two_factor
          SET failed_verification_count = greatest(failed_verification_count - 1, 0),
              locked_until = CASE WHEN failed_verification_count - 1 < $2 THEN NULL ELSE locked_until END
        WHERE id = $1`,
      [id, options.lockoutThreshold],
    );
  }

  async function check(userId: string, code: string, verified: boolean): Promise<CodeCheck> {
    const found = await totpOf(userId, verified);
    return found ? checkAgainst(found, code) : 'not_enabled';
  }

  async function checkAgainst(found: Enrolment, code: string): Promise<CodeCheck> {
    const attempt = await reserveAttempt(found.id);
    if (attempt.locked) return 'locked';
    const step = stepOf(found.totp, code);
    // A right code clears the count, this attempt's with it; a replay counts as a wrong code.
    if (step !== null && (await claimStep(found.id, step, true))) return 'ok';
    return attempt.locking ? 'locked' : 'invalid';
  }

  /** The user of a live challenge, read from the database (for the audit log: the signature is not checked). */
  async function challengeUser(challenge: string): Promise<string | null> {
    const identifier = challenge.slice(0, challenge.lastIndexOf('.'));
    if (!identifier.startsWith('2fa-')) return null;
    // Better Auth stores identifiers hashed (verification.storeIdentifier: 'hashed'): SHA-256, base64url.
    const stored = createHash('sha256').update(identifier).digest('base64url');
    const { rows } = await db.query<{ token: string }>(
      'SELECT token FROM verification_tokens WHERE identifier = $1 AND expires_at > now()',
      [stored],
    );
    return rows[0]?.token ?? null;
  }

  /**
   * Whether a challenge carries Better Auth's signature: `<identifier>.<base64 HMAC-SHA256 of it under auth.secret>`,
   * checked as better-call checks its signed cookies: 44 characters ending in '=', compared as the decoded bytes. Not
   * as text: base64 decoding ignores the last character's two spare bits, so four spellings carry one signature, and
   * Better Auth accepts them all (a text comparison here skipped the code's claim for the other three, and one code
   * then signed in as often as it stayed valid).
   */
  async function signedByUs(challenge: string): Promise<boolean> {
    const dot = challenge.lastIndexOf('.');
    const signature = challenge.slice(dot + 1);
    if (dot <= 0 || signature.length !== 44 || !signature.endsWith('=')) return false;
    const given = Buffer.from(signature, 'base64');
    const expected = createHmac('sha256', (await auth.$context).secret)
      .update(challenge.slice(0, dot))
      .digest();
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** The plugin's sign-in step for a challenge (sent as its cookie); the new session's token. */
  async function completeSignIn(
    challenge: string,
    code: string,
    method: 'totp' | 'backup_code',
    headers: Headers = new Headers(),
  ): Promise<string> {
    const withCookie = new Headers(headers);
    withCookie.set('cookie', `${cookieName}=${encodeURIComponent(challenge)}`);
    try {
      const res =
        method === 'totp'
          ? await auth.api.verifyTOTP({ body: { code }, headers: withCookie })
          : await auth.api.verifyBackupCode({ body: { code }, headers: withCookie });
      const sessionToken = (res as { token?: string }).token;
      if (!sessionToken) throw new Error('two-factor verification gave no session');
      return sessionToken;
    } catch (err) {
      throw translateTwoFactor(err);
    }
  }

  /**
   * Checks a sign-in code before the plugin's sign-in step sees it: returns when that step may complete the sign-in (a
   * right code), throws for a wrong one. Two gaps of the plugin are closed here. It reads the lock before comparing a
   * code and counts the failure after, so every guess in flight was compared: the attempt is counted first
   * (reserveAttempt). Its TOTP step accepts a code as often as it stays valid (90 s), last_used_step unread: the time
   * step is claimed here, as check() claims it, so a code that completed a sign-in or a re-authentication completes no
   * other (it counts as a wrong code). A challenge that is not ours is left to the plugin, which refuses it.
   */
  async function claimForSignIn(challenge: string, code: string, method: 'totp' | 'backup_code'): Promise<void> {
    if (!(await signedByUs(challenge))) return;
    const userId = await challengeUser(challenge);
    const found = userId ? await totpOf(userId, true) : null;
    if (!found) return;
    const attempt = await reserveAttempt(found.id);
    if (attempt.locked) throw new AppError('TWO_FACTOR_LOCKED', undefined, { retryAfter: attempt.retryAfter });
    if (method === 'totp') {
      const step = stepOf(found.totp, code);
      if (step !== null && (await claimStep(found.id, step, false))) return releaseAttempt(found.id);
      if (step !== null) throw new AppError('TWO_FACTOR_INVALID_CODE'); // a replay
    } else if (await isBackupCode(found.backupCodes, code)) {
      return releaseAttempt(found.id);
    }
    // The attempt that locked the account is answered as the plugin answers it: a wrong code.
    if (attempt.locking) throw new AppError('TWO_FACTOR_INVALID_CODE');
    // A wrong code still spends one of the challenge's 5 attempts, which the plugin keeps: it is shown an empty code,
    // which it cannot accept (the verdict stays ours, whatever its clock reads), and answers as for any wrong code.
    try {
      await completeSignIn(challenge, '', method);
    } catch (err) {
      // It counted the wrong code too, unless it refused the challenge first: the count is given back, not doubled.
      if (err instanceof AppError && err.code === 'TWO_FACTOR_INVALID_CODE') await releaseAttempt(found.id);
      throw err;
    }
    throw new Error('two-factor sign-in accepted an empty code');
  }

  /**
   * Runs a backup-code sign-in while no other of the user's runs in this process. The plugin removes a used code from
   * the list with a write conditional on the list it read: of two sign-ins with two right codes at once, the second
   * found the list changed, answered "try again" (a 400 here), and had spent its challenge's attempt counter without
   * giving it back, so the challenge was dead. Not across processes: a lock there would be a transaction holding a
   * connection while the plugin works on others, and enough sign-ins at once (one per user) would exhaust the pool.
   * Two codes of one user at the same moment on two processes stay that rare race.
   */
  const backupSignIns = new Map<string, Promise<unknown>>();
  async function oneBackupSignInAtATime<T>(userId: string, signIn: () => Promise<T>): Promise<T> {
    // The rest wait here, holding no connection.
    const turn = (backupSignIns.get(userId) ?? Promise.resolve()).catch(() => {}).then(signIn);
    backupSignIns.set(userId, turn);
    try {
      return await turn;
    } finally {
      if (backupSignIns.get(userId) === turn) backupSignIns.delete(userId);
    }
  }

  return {
    async enable(userId, sessionToken, password) {
      let res: Awaited<ReturnType<typeof startEnrolment>>;
      try {
        res = await startEnrolment(sessionToken, password);
      } catch (err) {
        throw translateTwoFactor(err);
      }
      if (!('totpURI' in res) || !res.totpURI || !res.backupCodes) throw new Error('two-factor enable gave no URI');
      return storedEnrolment(userId, res.totpURI);
    },

    async confirm(userId, code, keepSessionId) {
      const found = await totpOf(userId, false);
      if (!found) return { result: 'not_enabled' };
      const result = await checkAgainst(found, code);
      if (result !== 'ok') return { result };
      return db.transaction(async (tx): Promise<Confirmation> => {
        // Only the enrolment whose code was checked: an enable since then replaced its secret (refused: the code is
        // not the new secret's). The row gets a new id: the plugin writes an enrolment by the id it read, so an enable
        // that read this row before now (still pending) writes nothing, and finds 2FA on (storedEnrolment), instead of
        // leaving 2FA on with an unconfirmed secret. A lock cannot serialise the two: the plugin writes on connections
        // of its own (PGlite has one, held by a transaction), so it could not run while ours held the row.
        const verified = await tx.query(
          'UPDATE two_factor SET verified = true, id = $3 WHERE id = $1 AND secret = $2 AND NOT verified',
          [found.id, found.secret, generateId('twoFactor')],
        );
        if (verified.rowCount === 0) return { result: 'invalid' };
        await tx.query('UPDATE users SET two_factor_enabled = true, updated_at = now() WHERE id = $1', [userId]);
        // As a password change does: the other sessions were made with the password alone, and one of them would stay
        // a recent authentication (trusting a device, adding a passkey) without ever passing the second factor. The
        // sessions trigger announces each end, so every process drops them from its cache and closes their sockets.
        return { result: 'ok', endedSessions: await endOtherSessions(tx, userId, keepSessionId) };
      });
    },

    async disable(userId) {
      await db.transaction(async (tx) => {
        await tx.query('DELETE FROM two_factor WHERE user_id = $1', [userId]);
        await tx.query('UPDATE users SET two_factor_enabled = false, updated_at = now() WHERE id = $1', [userId]);
      });
    },

    async isEnabled(userId) {
      const { rows } = await db.query<{ on: boolean }>('SELECT two_factor_enabled AS on FROM users WHERE id = $1', [
        userId,
      ]);
      return rows[0]?.on === true;
    },

    checkCode: (userId, code) => check(userId, code, true),

    challengeFromCookies(setCookies) {
      for (const cookie of setCookies) {
        const eq = cookie.indexOf('=');
        if (cookie.slice(0, eq) !== cookieName) continue;
        const value = decodeURIComponent(cookie.slice(eq + 1).split(';')[0] ?? '');
        if (value) return value;
      }
      return null;
    },

    challengeOfRequest(cookieHeader) {
      // Read as Better Auth's cookie parser (better-call's parseCookies) reads it: the first pair of that name, the
      // value trimmed, one pair of double quotes dropped, URL-decoded when it holds a %, kept raw when that fails.
      for (const pair of (cookieHeader ?? '').split(';')) {
        const eq = pair.indexOf('=');
        if (eq < 0 || pair.slice(0, eq).trim() !== cookieName) continue;
        let value = pair.slice(eq + 1).trim();
        if (value.startsWith('"')) value = value.slice(1, -1);
        if (value.includes('%')) {
          try {
            value = decodeURIComponent(value);
          } catch {}
        }
        return value || null;
      }
      return null;
    },

    challengeUser,

    claimSignInCode: claimForSignIn,

    async verifyChallenge(challenge, code, headers) {
      const method = /^\d{6}$/.test(code) ? 'totp' : 'backup_code';
      const signIn = async () => {
        await claimForSignIn(challenge, code, method);
        return completeSignIn(challenge, code, method, headers);
      };
      if (method === 'totp') return { sessionToken: await signIn(), method };
      // A challenge that is no one's needs no turn: the plugin refuses it.
      const userId = await challengeUser(challenge);
      return { sessionToken: userId ? await oneBackupSignInAtATime(userId, signIn) : await signIn(), method };
    },
  };
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** The plugin's error codes mapped onto our catalogue. */
export function translateTwoFactor(err: unknown): unknown {
  if (!(err instanceof APIError)) return err;
  const code = (err.body as { code?: string } | undefined)?.code ?? '';
  switch (code) {
    case 'INVALID_CODE':
    case 'INVALID_BACKUP_CODE':
      return new AppError('TWO_FACTOR_INVALID_CODE', undefined, {}, { cause: err });
    case 'TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE':
      return new ChallengeExhausted({ cause: err });
    case 'ACCOUNT_TEMPORARILY_LOCKED':
      return new AppError('TWO_FACTOR_LOCKED', undefined, {}, { cause: err });
    case 'INVALID_TWO_FACTOR_COOKIE':
    case 'TOTP_NOT_ENABLED':
    case 'BACKUP_CODES_NOT_ENABLED':
      return new AppError('TWO_FACTOR_CHALLENGE_INVALID', undefined, {}, { cause: err });
    case 'TOTP_ALREADY_ENABLED':
      return new AppError('TWO_FACTOR_ALREADY_ENABLED', undefined, {}, { cause: err });
    case 'INVALID_PASSWORD':
      return new AppError('INVALID_PASSWORD', undefined, { field: 'password' }, { cause: err });
    // The sign-in guard's refusals, when the session is made after the code (engine.ts translates them alike).
    case 'IP_NOT_ALLOWED':
    case 'ACCOUNT_DISABLED':
      return new AppError(code, undefined, {}, { cause: err });
    default:
      if (err.statusCode >= 400 && err.statusCode < 500) {
        return new AppError('BAD_REQUEST', err.message || undefined, {}, { cause: err });
      }
      return err;
  }
}
