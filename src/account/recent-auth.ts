import type { CodeCheck } from '../auth/index.js';
import type { Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';

export interface RecentAuthOptions {
  db: Queryable;
  /** auth.recent_auth_window: a session created this recently counts as a fresh sign-in. */
  windowSeconds: number;
  /** A TOTP code of the user's active enrolment (counts toward the 2FA lockout). */
  checkCode(userId: string, code: string): Promise<CodeCheck>;
}

export interface RecentAuth {
  /**
   * Passes when the session was created within the window, or `code` is a valid TOTP code of the user. Throws
   * REAUTH_REQUIRED (403) otherwise, TWO_FACTOR_INVALID_CODE (401) for a wrong code, TWO_FACTOR_LOCKED (429).
   */
  assert(userId: string, sessionId: string | null, code: string | undefined): Promise<'fresh' | 'totp'>;
}

/** OWASP ASVS V3.7.1 / NIST 800-63B reauthentication: sensitive changes need a fresh sign-in or a second factor. */
export function createRecentAuth(options: RecentAuthOptions): RecentAuth {
  return {
    async assert(userId, sessionId, code) {
      if (code !== undefined && code !== '') {
        const result = await options.checkCode(userId, code);
        if (result === 'ok') return 'totp';
        if (result === 'locked') throw new AppError('TWO_FACTOR_LOCKED');
        if (result === 'invalid') throw new AppError('TWO_FACTOR_INVALID_CODE');
        // not_enabled: a code cannot stand in for a sign-in; fall through to the session's age.
      }
      if (sessionId) {
        const { rows } = await options.db.query<{ fresh: boolean }>(
          `SELECT created_at > now() - make_interval(secs => $2) AS fresh FROM sessions WHERE id = $1`,
          [sessionId, options.windowSeconds],
        );
        if (rows[0]?.fresh) return 'fresh';
        // The session ended after this request was authenticated (a logout, a revocation, a disable by another
        // request): the credential is what is gone, not the sign-in's freshness.
        if (rows.length === 0) throw new AppError('INVALID_TOKEN');
      }
      throw new AppError('REAUTH_REQUIRED');
    },
  };
}
