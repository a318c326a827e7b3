import { type Static, Type as T } from '@sinclair/typebox';
import { CODE_CHALLENGE_PATTERN, CODE_VERIFIER_PATTERN, SECRET_PATTERN } from '../../accounts/index.js';
import { Email } from './auth.schemas.js';

/** Schemas of the OAuth, magic-link and anonymous routes. */

export const ProviderParams = T.Object({
  provider: T.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'Provider id: google, github or an oidc id' }),
});
export type ProviderParams = Static<typeof ProviderParams>;

export const ProviderIdParams = T.Object({
  providerId: T.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }),
});
export type ProviderIdParams = Static<typeof ProviderIdParams>;

export const ProvidersResponse = T.Object({
  success: T.Literal(true),
  providers: T.Array(
    T.Object({
      id: T.String(),
      name: T.String(),
      kind: T.Union([T.Literal('social'), T.Literal('oidc')]),
      authorizeUrl: T.String({ description: 'Open in the browser to sign in with this provider' }),
    }),
  ),
});

export const CodeChallenge = T.String({
  pattern: CODE_CHALLENGE_PATTERN,
  description:
    'PKCE S256 challenge (base64url SHA-256 of a verifier the front end keeps): the one-time code of this flow is then exchanged only with that verifier',
});

export const StartQuery = T.Object({ codeChallenge: T.Optional(CodeChallenge) });
export type StartQuery = Static<typeof StartQuery>;

export const CompleteQuery = T.Object({
  error: T.Optional(T.String({ maxLength: 200 })),
  error_description: T.Optional(T.String({ maxLength: 1000 })),
});
export type CompleteQuery = Static<typeof CompleteQuery>;

export const LinkedQuery = T.Object({ provider: T.Optional(T.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' })) });
export type LinkedQuery = Static<typeof LinkedQuery>;

export const Code = T.String({ pattern: SECRET_PATTERN, description: 'The one-time code from the redirect' });

export const ExchangeBody = T.Object({
  code: Code,
  codeVerifier: T.Optional(
    T.String({
      pattern: CODE_VERIFIER_PATTERN,
      description:
        "The verifier of the flow's codeChallenge (required for a code minted with one, refused for one without)",
    }),
  ),
});
export type ExchangeBody = Static<typeof ExchangeBody>;

export const CodeResponse = T.Object({
  success: T.Literal(true),
  code: T.String({ description: 'One-time code for POST /auth/oauth/exchange (oauth.redirect_url is empty)' }),
});

export const LinkResponse = T.Object({
  success: T.Literal(true),
  url: T.String({ description: "The provider's authorization URL: navigate the browser there" }),
});

export const AccountsResponse = T.Object({
  success: T.Literal(true),
  accounts: T.Array(T.Object({ providerId: T.String(), accountId: T.String(), createdAt: T.String() })),
});

export const SuccessResponse = T.Object({ success: T.Literal(true) });

export const MagicLinkBody = T.Object({ email: Email, codeChallenge: T.Optional(CodeChallenge) });
export type MagicLinkBody = Static<typeof MagicLinkBody>;

export const MagicLinkResponse = T.Object({ success: T.Literal(true), message: T.String() });

// Checked in the handler, so a mangled link ends on the front end's error page like an expired one.
export const MagicLinkVerifyQuery = T.Object({ token: T.String({ maxLength: 512 }) });
export type MagicLinkVerifyQuery = Static<typeof MagicLinkVerifyQuery>;
