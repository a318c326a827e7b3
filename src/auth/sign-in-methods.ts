import type { GenericEndpointContext } from 'better-auth';
import { APIError, createAuthMiddleware, getOAuthState } from 'better-auth/api';
import { anonymous } from 'better-auth/plugins/anonymous';
import { type GenericOAuthConfig, genericOAuth } from 'better-auth/plugins/generic-oauth';
import type { Config } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import { type Database, isUniqueViolation } from '../db/index.js';
import { createIssuerCheck, type IssuerCheck } from './issuer-check.js';

/** Where Better Auth sends the browser after an OAuth callback, success or failure (see src/accounts/). */
export const OAUTH_COMPLETE_PATH = '/auth/oauth/complete';
export const OAUTH_LINKED_PATH = '/auth/oauth/linked';

// Built-in providers and the static segments of /auth/oauth/*, which a provider id would shadow.
const RESERVED_IDS = new Set(['google', 'github', 'complete', 'linked', 'providers', 'accounts', 'exchange', 'link']);

/** Providers enabled by the configuration: Google and GitHub when both id and secret are set, every generic OIDC one. */
export function configuredProviders(config: Config): Array<{ id: string; name: string; kind: 'social' | 'oidc' }> {
  const out: Array<{ id: string; name: string; kind: 'social' | 'oidc' }> = [];
  if (config.oauth.google.client_id && config.oauth.google.client_secret) {
    out.push({ id: 'google', name: 'Google', kind: 'social' });
  }
  if (config.oauth.github.client_id && config.oauth.github.client_secret) {
    out.push({ id: 'github', name: 'GitHub', kind: 'social' });
  }
  for (const [id, p] of Object.entries(config.oauth.oidc)) out.push({ id, name: p.name || id, kind: 'oidc' });
  return out;
}

/**
 * The parts of the betterAuth({...}) call that add sign-in methods: social providers, generic OIDC providers by
 * issuer, the anonymous plugin (users.is_anonymous) and the account-linking policy.
 */
export function signInMethodOptions(config: Config, db: Database, log: { error(obj: object, msg: string): void }) {
  const { oauth } = config;
  if (oauth.redirect_url && !/^https?:\/\/[^/?#\s]+/.test(oauth.redirect_url)) {
    throw new ConfigError(`oauth.redirect_url: not an http(s) URL (${config.files.config})`);
  }
  const socialProviders: Record<string, { clientId: string; clientSecret: string }> = {};
  if (oauth.google.client_id && oauth.google.client_secret) {
    socialProviders.google = { clientId: oauth.google.client_id, clientSecret: oauth.google.client_secret };
  }
  if (oauth.github.client_id && oauth.github.client_secret) {
    socialProviders.github = { clientId: oauth.github.client_id, clientSecret: oauth.github.client_secret };
  }

  const oidc: GenericOAuthConfig[] = Object.entries(oauth.oidc).map(([id, p]) => {
    if (RESERVED_IDS.has(id)) throw new ConfigError(`oauth.oidc.${id}: this id is reserved (${config.files.config})`);
    if (!p.client_secret) {
      throw new ConfigError(`oauth.oidc.${id}.client_secret: missing value (${config.files.secrets})`);
    }
    let discoveryUrl: string;
    try {
      discoveryUrl = `${new URL(p.issuer).href.replace(/\/$/, '')}/.well-known/openid-configuration`;
    } catch {
      throw new ConfigError(`oauth.oidc.${id}.issuer: not a valid URL (${config.files.config})`);
    }
    return {
      providerId: id,
      name: p.name || id,
      discoveryUrl,
      clientId: p.client_id,
      clientSecret: p.client_secret,
      scopes: p.scopes ?? ['openid', 'email', 'profile'],
      pkce: true,
      // Without verified id tokens an OIDC provider is skipped: a token signed by another issuer must not pass.
      requireIdTokenVerification: true,
      tokenEndpointAuth: { method: p.token_auth ?? 'client_secret_basic' },
    };
  });

  return {
    socialProviders,
    onAPIError: {
      /** Errors of Better Auth's redirect flows (a forged state, a refused link) land on our completion route. */
      errorURL: `${config.server.base_url}${OAUTH_COMPLETE_PATH}`,
      // An exception that is not Better Auth's own answer (a hash refused with SERVER_BUSY, a lost database) is
      // thrown to our error handler, which answers with its stable code and logs it through the gateway's logger.
      // Otherwise its router answers 500 and prints the stack trace to stderr with console.error.
      throw: true,
    },
    accountLinking: {
      enabled: true,
      // No provider is trusted blindly: an OAuth sign-in joins an existing account by email only when the provider
      // says the email is verified (and the local account's email is verified too, Better Auth's default).
      trustedProviders: [] as string[],
      allowDifferentEmails: oauth.link_different_emails,
    },
    plugins: [
      ...(oidc.length > 0 ? [genericOAuth({ config: oidc }), issuerGuard(createIssuerCheck(oauth.oidc, log))] : []),
      // Only when enabled: the plugin also serves Better Auth's own /api/auth/sign-in/anonymous.
      ...(config.anonymous.enabled ? [anonymousPlugin(db)] : []),
    ],
    databaseHooks: {
      ...(config.auth.require_email_verification && {
        user: { create: { before: refuseUnverifiedProviderSignUp } },
      }),
      account: {
        create: {
          before: refuseImplicitLinkToTwoFactorUser,
          // An anonymous user who links a provider (POST /auth/oauth/link/:provider) becomes a regular user with
          // the same id: keep their data, stop the cleanup job from deleting them.
          async after(account: { userId: string; providerId: string; idToken?: string | null }) {
            if (account.providerId === 'credential') return;
            const upgrade = (email: string | null) =>
              db.query(
                `UPDATE users SET is_anonymous = FALSE, updated_at = now(),
                        email = CASE WHEN $2::text IS NOT NULL
                                      AND NOT EXISTS (SELECT 1 FROM users o WHERE lower(o.email) = lower($2::text))
                                     THEN lower($2::text) ELSE email END,
                        email_verified = email_verified OR ($2::text IS NOT NULL
                                      AND NOT EXISTS (SELECT 1 FROM users o WHERE lower(o.email) = lower($2::text)))
                  WHERE id = $1 AND is_anonymous`,
                [account.userId, email],
              );
            try {
              await upgrade(verifiedEmailOf(account.idToken));
            } catch (err) {
              // The address was taken between the check and the write (another account committed it meanwhile): the
              // user is upgraded all the same, on their placeholder address, as when it was taken before.
              if (!isUniqueViolation(err)) throw err;
              await upgrade(null);
            }
          },
        },
      },
    },
  };
}

/**
 * Better Auth links a provider account to the existing user with the same verified email when someone signs in with
 * that provider (implicit linking). For a user with 2FA, that sign-in would skip the second factor, and so would every
 * later one through the provider account, whoever created it at the provider. Such a user links from their own
 * session instead: the link flow (its OAuth state names the user) asks for a recent sign-in or a 2FA code first.
 * The refusal carries Better Auth's own code for an account it does not link, so the browser ends at
 * /auth/oauth/complete with OAUTH_ACCOUNT_NOT_LINKED. New users have no 2FA yet, and users without it keep implicit
 * linking.
 */
async function refuseImplicitLinkToTwoFactorUser(
  account: { userId: string; providerId: string },
  ctx: GenericEndpointContext | null,
): Promise<void> {
  // No endpoint: the gateway's own code creating a row, not a sign-in. Passwords are not provider accounts.
  if (!ctx || account.providerId === 'credential') return;
  if ((await getOAuthState())?.link?.userId === account.userId) return;
  // Through Better Auth's adapter: a sign-up creates its user and account in one transaction (one connection on PGlite).
  const user = await ctx.context.internalAdapter.findUserById(account.userId);
  if ((user as { twoFactorEnabled?: unknown } | null)?.twoFactorEnabled === true) {
    throw new APIError('FORBIDDEN', { code: 'account_not_linked' });
  }
}

/** Better Auth's endpoints that create a user from a provider account: the OAuth callback, an id token sign-in. */
const PROVIDER_SIGN_UP_PATHS = new Set(['/callback/:id', '/sign-in/social']);

/**
 * With auth.require_email_verification, no session goes to an address nobody proved. A provider account whose email
 * the provider does not say is verified would create a user and sign it in at once, and Better Auth's sendOnSignUp
 * would mail the address's owner a link that verifies that user. For an address that has an account, Better Auth
 * refuses the same sign-in ("account not linked"); the refusal here is that answer, to the letter (no message, so the
 * redirect has no error_description either), so a taken and a free address end alike at
 * /auth/oauth/complete?error=OAUTH_ACCOUNT_NOT_LINKED, and no user, session or email is created. Users created any
 * other way (sign-up, magic link, anonymous, the gateway's own code) and provider accounts with a verified email are
 * not concerned; linking goes through Better Auth's link flow, which creates no user and wants a verified email.
 */
async function refuseUnverifiedProviderSignUp(
  user: { emailVerified?: boolean | null },
  ctx: GenericEndpointContext | null,
): Promise<void> {
  if (!ctx?.path || !PROVIDER_SIGN_UP_PATHS.has(ctx.path) || user.emailVerified === true) return;
  throw new APIError('FORBIDDEN', { code: 'account_not_linked' });
}

/**
 * The domain of an anonymous user's placeholder address (`temp-<id>@anonymous.invalid`): `.invalid` is reserved
 * (RFC 2606), so no mail goes out and no real address collides.
 */
export const ANONYMOUS_EMAIL_DOMAIN = 'anonymous.invalid';

/** Better Auth's anonymous plugin on users.is_anonymous. */
function anonymousPlugin(db: Database) {
  return anonymous({
    emailDomainName: ANONYMOUS_EMAIL_DOMAIN,
    generateName: () => 'Anonymous',
    schema: { user: { fields: { isAnonymous: 'is_anonymous' } } },
    // An anonymous user who signs in to another account through Better Auth's own routes: their channel links
    // move to that account before Better Auth deletes the anonymous user. (Our routes upgrade in place instead.)
    async onLinkAccount({ anonymousUser, newUser }) {
      await db.query(
        `UPDATE user_channel_links SET user_id = $2 WHERE user_id = $1
            AND NOT EXISTS (SELECT 1 FROM user_channel_links o
                             WHERE o.user_id = $2 AND o.channel_type = user_channel_links.channel_type)`,
        [anonymousUser.user.id, newUser.user.id],
      );
    },
  });
}

/**
 * Refuses to start a sign-in or link with an OIDC provider whose discovery document announces another issuer than
 * the configured one (Better Auth would otherwise verify id tokens against the announced issuer).
 */
function issuerGuard(issuers: IssuerCheck) {
  return {
    id: 'gateway-issuer-guard',
    hooks: {
      before: [
        {
          matcher: (ctx: { path?: string }) => ctx.path === '/sign-in/social' || ctx.path === '/link-social',
          handler: createAuthMiddleware(async (ctx) => {
            const provider = (ctx.body as { provider?: unknown } | undefined)?.provider;
            if (typeof provider === 'string' && (await issuers.status(provider)) === 'mismatch') {
              throw new APIError('BAD_REQUEST', { code: 'OAUTH_ISSUER_MISMATCH', message: 'issuer mismatch' });
            }
          }),
        },
      ],
    },
  };
}

/** The email of an id token Better Auth has just verified, when the token says it is verified; else null. */
function verifiedEmailOf(idToken: string | null | undefined): string | null {
  const payload = idToken?.split('.')[1];
  if (!payload) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
      email?: unknown;
      email_verified?: unknown;
    };
    const verified = claims.email_verified === true || claims.email_verified === 'true';
    return verified && typeof claims.email === 'string' && claims.email.length <= 254 ? claims.email : null;
  } catch {
    return null;
  }
}
