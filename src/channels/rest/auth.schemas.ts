import { type Static, Type as T } from '@sinclair/typebox';
import { EMAIL_MAX_LENGTH, EMAIL_PATTERN, LOOKUP_EMAIL_PATTERN } from '../../accounts/email-address.js';

/** Schemas of the /auth/* routes: validation and the OpenAPI document come from these. */

// The rules the operator CLI and the config share (src/accounts/email-address.ts); handlers trim surrounding spaces.

/**
 * An address a route only looks up (sign-in, password reset, magic link, verification resend, passkey options): any
 * bare address, so that one stored under an earlier rule (`ops@localhost`) still signs in. Never for a route that
 * stores an address: that is NewEmail.
 */
export const Email = T.String({
  minLength: 3,
  maxLength: EMAIL_MAX_LENGTH,
  pattern: LOOKUP_EMAIL_PATTERN,
  description: 'Email address; case and surrounding spaces are ignored',
  examples: ['user@example.com'],
});

/** An address a route stores (registration, an address change): one Better Auth's sign-up takes. */
export const NewEmail = T.String({
  minLength: 3,
  maxLength: EMAIL_MAX_LENGTH,
  pattern: EMAIL_PATTERN,
  description:
    "Email address: letters, digits and _ ' + - in dot-separated parts, @, a domain whose last part has two or more letters; case and surrounding spaces are ignored",
  examples: ['user@example.com'],
});

export const ErrorResponse = T.Object(
  {
    success: T.Literal(false),
    error: T.Object({
      code: T.String({ description: 'Stable error code (see README)' }),
      message: T.String(),
      field: T.Optional(T.String({ description: 'The invalid field, for VALIDATION_FAILED' })),
    }),
  },
  { $id: 'ErrorResponse' },
);

export const TokenResponse = T.Object({
  success: T.Literal(true),
  userId: T.String({ examples: ['user_1234567890_abc123'] }),
  token: T.String({ description: 'HS256 JWT; send as Authorization: Bearer <token>' }),
});

export const VerificationRequiredResponse = T.Object({
  success: T.Literal(true),
  userId: T.String(),
  verificationRequired: T.Literal(true, {
    description: 'auth.require_email_verification is on: follow the emailed link, then sign in',
  }),
});

export const TwoFactorRequiredResponse = T.Object({
  success: T.Literal(true),
  twoFactorRequired: T.Literal(true),
  challengeToken: T.String({
    description:
      'Single-use handle of this pending sign-in (auth.two_factor.challenge_ttl); send to POST /auth/2fa/verify',
  }),
});

export const makeRegisterBody = (password: { min: number; max: number }) =>
  T.Object({
    email: NewEmail,
    password: T.String({ minLength: password.min, maxLength: password.max, examples: ['SecurePassword123!'] }),
    name: T.Optional(T.String({ maxLength: 100, default: '', examples: ['John Doe'] })),
  });

export const makeLoginBody = (password: { max: number }) =>
  T.Object({
    email: Email,
    password: T.String({ minLength: 1, maxLength: password.max }),
  });

export type RegisterBody = Static<ReturnType<typeof makeRegisterBody>>;
export type LoginBody = Static<ReturnType<typeof makeLoginBody>>;

export const License = T.Object({
  type: T.String({ examples: ['pro'] }),
  features: T.Record(T.String(), T.Unknown()),
  resourceLimits: T.Record(T.String(), T.Unknown()),
});

export const SessionResponse = T.Object({
  success: T.Literal(true),
  user: T.Object({ id: T.String(), email: T.String(), name: T.String() }),
  session: T.Object({ id: T.String(), expiresAt: T.String({ format: 'date-time' }) }),
  license: License,
});

export const HealthResponse = T.Object({
  success: T.Boolean(),
  status: T.Union([T.Literal('ok'), T.Literal('unavailable')]),
  version: T.String(),
  uptime: T.Number({ description: 'seconds since start' }),
  database: T.Object({ kind: T.String(), reachable: T.Boolean() }),
  error: T.Optional(T.Object({ code: T.String(), message: T.String() })),
});
