import { APIError } from 'better-auth/api';
import type { Config } from '../config/index.js';
import { type Database, isForeignKeyViolation } from '../db/index.js';
import { AppError } from '../errors/index.js';
import { type BetterAuthInstance, CLIENT_IP_HEADER } from './better-auth.js';
import type { NewSession } from './engine.js';
import { sessionOf } from './session-of.js';
import { OAUTH_COMPLETE_PATH, OAUTH_LINKED_PATH } from './sign-in-methods.js';

/** A provider redirect to send the browser to, with the cookies (OAuth state) the browser must carry back. */
export interface ProviderRedirect {
  url: string;
  cookies: string[];
}

export interface LinkedAccount {
  providerId: string;
  accountId: string;
  createdAt: string;
}

/** What the OAuth, magic-link and anonymous routes need from the auth engine. */
export interface SignInMethods {
  /** Starts an OAuth sign-in: the provider's authorize URL, PKCE and state kept by Better Auth (state cookie). */
  startOAuth(provider: string, headers: Headers): Promise<ProviderRedirect>;
  /** Starts linking a provider to the user of `sessionId`. */
  startLink(provider: string, sessionId: string, headers: Headers): Promise<ProviderRedirect>;
  /**
   * Removes the user's account of `providerId` (one, the oldest, if several) unless it is their last way to sign in:
   * no password, other provider account or passkey left.
   */
  unlink(providerId: string, userId: string, sessionId: string): Promise<void>;
  listAccounts(userId: string): Promise<LinkedAccount[]>;
  /** A fresh anonymous user (users.is_anonymous) and their session. */
  signInAnonymous(headers: Headers): Promise<NewSession>;
  /**
   * A session for an existing user (magic link): the same rows Better Auth creates on sign-in. A user deleted since the
   * link was read is refused as a link whose account is gone is (MAGIC_LINK_INVALID).
   */
  createSession(userId: string, headers: Headers): Promise<NewSession>;
  /** A user without a password (magic link sign-up); the address counts as verified. */
  createUser(email: string): Promise<string>;
}

export function createSignInMethods(auth: BetterAuthInstance, db: Database, config: Config): SignInMethods {
  const base = config.server.base_url;
  const baBearer = async (sessionId: string) => {
    const { rows } = await db.query<{ token: string }>(
      'SELECT token FROM sessions WHERE id = $1 AND expires_at > now()',
      [sessionId],
    );
    const token = rows[0]?.token;
    if (!token) throw new AppError('INVALID_TOKEN');
    return token;
  };
  // The typed surface of the plugins depends on which are configured; these calls use the stable core endpoints.
  const api = auth.api as unknown as Record<string, (input: object) => Promise<unknown>>;
  const call = async (name: string, input: object) => {
    const fn = api[name];
    if (!fn) throw new Error(`Better Auth endpoint ${name} is not available`);
    return fn(input);
  };

  const redirectOf = (result: unknown): ProviderRedirect => {
    const { headers, response } = result as { headers: Headers; response: { url?: string } };
    if (!response.url) throw new Error('Better Auth returned no authorization URL');
    return { url: response.url, cookies: headers.getSetCookie() };
  };

  return {
    async startOAuth(provider, headers) {
      try {
        const result = await call('signInSocial', {
          body: {
            provider,
            callbackURL: `${base}${OAUTH_COMPLETE_PATH}`,
            errorCallbackURL: `${base}${OAUTH_COMPLETE_PATH}`,
            disableRedirect: true,
          },
          headers,
          returnHeaders: true,
        });
        return redirectOf(result);
      } catch (err) {
        throw translate(err);
      }
    },

    async startLink(provider, sessionId, headers) {
      const h = new Headers(headers);
      h.set('authorization', `Bearer ${await baBearer(sessionId)}`);
      try {
        const result = await call('linkSocialAccount', {
          body: {
            provider,
            callbackURL: `${base}${OAUTH_LINKED_PATH}?provider=${encodeURIComponent(provider)}`,
            errorCallbackURL: `${base}${OAUTH_COMPLETE_PATH}`,
            disableRedirect: true,
          },
          headers: h,
          returnHeaders: true,
        });
        return redirectOf(result);
      } catch (err) {
        throw translate(err);
      }
    },

    async unlink(providerId, userId, sessionId) {
      // Better Auth's rule for its own account changes: a session at most session.freshAge old (a day; 0 turns it off).
      const { freshAge } = (await auth.$context).sessionConfig;
      await db.transaction(async (tx) => {
        // The lock passkey removal takes: removals of ways in run one after another, each seeing what the last left.
        await tx.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [userId]);
        const { rows } = await tx.query<{ id: string }>(
          `SELECT id FROM user_credentials WHERE user_id = $1 AND provider_id = $2 AND provider_id <> 'credential'
            ORDER BY created_at, id LIMIT 1`,
          [userId, providerId],
        );
        const accountId = rows[0]?.id;
        if (!accountId) throw new AppError('OAUTH_ACCOUNT_NOT_FOUND');
        const { rows: sessions } = await tx.query<{ fresh: boolean }>(
          `SELECT created_at > now() - make_interval(secs => $3) AS fresh FROM sessions
            WHERE id = $1 AND user_id = $2 AND expires_at > now()`,
          [sessionId, userId, freshAge],
        );
        const session = sessions[0];
        if (!session) throw new AppError('INVALID_TOKEN');
        if (freshAge !== 0 && !session.fresh) throw new AppError('SESSION_NOT_FRESH');
        // Another way in: a password, another provider account, a passkey (as passkey removal counts them).
        const { rows: others } = await tx.query<{ found: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM user_credentials
                           WHERE user_id = $1 AND id <> $2 AND (provider_id <> 'credential' OR password_hash IS NOT NULL))
               OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1) AS found`,
          [userId, accountId],
        );
        if (others[0]?.found !== true) throw new AppError('LAST_SIGN_IN_METHOD');
        await tx.query('DELETE FROM user_credentials WHERE id = $1 AND user_id = $2', [accountId, userId]);
      });
    },

    async listAccounts(userId) {
      const { rows } = await db.query<{ provider_id: string; account_id: string; created_at: Date | string }>(
        `SELECT provider_id, account_id, created_at FROM user_credentials
          WHERE user_id = $1 AND provider_id <> 'credential' ORDER BY created_at`,
        [userId],
      );
      return rows.map((r) => ({
        providerId: r.provider_id,
        accountId: r.account_id,
        createdAt: new Date(r.created_at).toISOString(),
      }));
    },

    async signInAnonymous(headers) {
      const res = (await call('signInAnonymous', { headers })) as { token?: string } | null;
      if (!res?.token) throw new Error('anonymous sign-in returned no session');
      return sessionOf(db, res.token);
    },

    async createSession(userId, headers) {
      const ctx = await auth.$context;
      const session = await ctx.internalAdapter
        .createSession(userId, false, {
          ipAddress: headers.get(CLIENT_IP_HEADER) ?? '',
          userAgent: headers.get('user-agent') ?? '',
        })
        .catch((err: unknown) => {
          // The insert broke the sessions -> users foreign key: the user was deleted after the sign-in guard read it.
          if (isForeignKeyViolation(err)) throw new AppError('MAGIC_LINK_INVALID', undefined, {}, { cause: err });
          throw translate(err);
        });
      if (!session) throw new Error('session not created');
      return { userId, sessionId: session.id, expiresAt: new Date(session.expiresAt) };
    },

    async createUser(email) {
      const ctx = await auth.$context;
      const user = await ctx.internalAdapter.createUser(
        { email, name: '', emailVerified: true },
        { method: 'magic-link' },
      );
      if (!user) throw new Error('user not created');
      return user.id;
    },
  };
}

/** Better Auth's refusals on these routes, as our stable codes. */
function translate(err: unknown): unknown {
  if (!(err instanceof APIError)) return err;
  const code = (err.body as { code?: string } | undefined)?.code ?? '';
  if (code === 'PROVIDER_NOT_FOUND' || code === 'OAUTH_PROVIDER_NOT_FOUND') {
    return new AppError('OAUTH_PROVIDER_UNKNOWN', undefined, {}, { cause: err });
  }
  if (code === 'OAUTH_ISSUER_MISMATCH') return new AppError('OAUTH_ISSUER_MISMATCH', undefined, {}, { cause: err });
  // The sign-in guard's refusals (src/access/sign-in-guard.ts), raised inside Better Auth's session creation.
  if (code === 'IP_NOT_ALLOWED' || code === 'ACCOUNT_DISABLED')
    return new AppError(code, undefined, {}, { cause: err });
  if (err.statusCode === 401) return new AppError('INVALID_TOKEN', undefined, {}, { cause: err });
  if (err.statusCode >= 400 && err.statusCode < 500) {
    return new AppError('BAD_REQUEST', err.message || undefined, {}, { cause: err });
  }
  return err;
}
