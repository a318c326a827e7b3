/**
 * Every error code the gateway answers with. A code is API: add codes, never rename or reuse one.
 * Each has its HTTP status and a public message; the README lists them all.
 */
export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: { status: 400, message: 'The request is invalid.' },
  MALFORMED_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  BAD_REQUEST: { status: 400, message: 'The request could not be understood.' },
  AUTH_REQUIRED: { status: 401, message: 'Authentication is required.' },
  INVALID_TOKEN: { status: 401, message: 'The token is invalid, expired or revoked.' },
  INVALID_CREDENTIALS: { status: 401, message: 'Invalid email or password.' },
  FORBIDDEN: { status: 403, message: 'This action is not allowed.' },
  NOT_FOUND: { status: 404, message: 'No such route.' },
  EMAIL_TAKEN: { status: 409, message: 'An account with this email already exists.' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported content type; send application/json.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests; try again later.' },
  INTERNAL_ERROR: { status: 500, message: 'Something went wrong on our side.' },
  DATABASE_UNAVAILABLE: { status: 503, message: 'The database is unavailable; try again shortly.' },
  SERVER_BUSY: { status: 503, message: 'The server is busy; try again shortly.' },
  // Sign-in by OAuth / OIDC, magic link and anonymous trial (src/accounts/).
  FEATURE_DISABLED: { status: 404, message: 'This sign-in method is not enabled.' },
  OAUTH_PROVIDER_UNKNOWN: { status: 404, message: 'No such OAuth provider is configured.' },
  OAUTH_ACCOUNT_NOT_FOUND: { status: 404, message: 'No linked account of this provider.' },
  LAST_SIGN_IN_METHOD: { status: 409, message: 'This is the last way to sign in to the account; add another first.' },
  SESSION_NOT_FRESH: { status: 403, message: 'Sign in again to do this.' },
  EXCHANGE_CODE_INVALID: { status: 400, message: 'The code is invalid, expired or already used.' },
  OAUTH_STATE_INVALID: { status: 400, message: 'The sign-in could not be verified (state mismatch); start again.' },
  OAUTH_ISSUER_MISMATCH: { status: 400, message: 'The identity provider answering is not the one configured.' },
  OAUTH_ACCOUNT_NOT_LINKED: {
    status: 409,
    message: 'An account with this email exists; sign in to it and link the provider from there.',
  },
  OAUTH_LINK_REFUSED: { status: 409, message: 'This provider account cannot be linked to your account.' },
  OAUTH_FAILED: { status: 400, message: 'The sign-in with the identity provider failed.' },
  MAGIC_LINK_INVALID: { status: 400, message: 'The sign-in link is invalid, expired or already used.' },
  NOT_ANONYMOUS: { status: 409, message: 'This account is already registered.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error meant for the client: a stable code, its status, a public message and optional details. */
export class AppError extends Error {
  override name = 'AppError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly details: { field?: string; retryAfter?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(message ?? ERROR_CATALOGUE[code].message, options);
    this.status = ERROR_CATALOGUE[code].status;
  }
}

export function appError(code: ErrorCode, message?: string, details?: AppError['details']): AppError {
  return new AppError(code, message, details);
}
