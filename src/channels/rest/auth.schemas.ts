import { type Static, Type as T } from '@sinclair/typebox';
import { EMAIL_MAX_LENGTH, EMAIL_PATTERN } from '../../accounts/email-address.js';

/** Schemas of the /auth/* routes: validation and the OpenAPI document come from these. */

// The rule the operator CLI shares (src/accounts/email-address.ts); the handler trims surrounding spaces.
export const Email = T.String({
  minLength: 3,
  maxLength: EMAIL_MAX_LENGTH,
  pattern: EMAIL_PATTERN,
  description: 'Email address; case and surrounding spaces are ignored',
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
    email: Email,
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
