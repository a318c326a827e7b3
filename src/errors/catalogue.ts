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
  URI_TOO_LONG: { status: 414, message: 'The request path is too long.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive in time.' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported content type; send application/json.' },
  EXPECTATION_FAILED: { status: 417, message: 'Only Expect: 100-continue is supported.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are too large.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests; try again later.' },
  INTERNAL_ERROR: { status: 500, message: 'Something went wrong on our side.' },
  DATABASE_UNAVAILABLE: { status: 503, message: 'The database is unavailable; try again shortly.' },
  SERVER_BUSY: { status: 503, message: 'The server is busy; try again shortly.' },
  ACCOUNT_LOCKED: { status: 429, message: 'Too many failed sign-ins for this account; try again later.' },
  HTTPS_REQUIRED: { status: 403, message: 'This gateway only accepts HTTPS requests.' },
  INVALID_ORIGIN: {
    status: 403,
    message: 'A request with cookies from a page of an untrusted origin is refused (see server.trusted_origins).',
  },
  PASSKEY_MALFORMED_CREDENTIAL: {
    status: 400,
    message:
      'The passkey credential is not a valid WebAuthn response (send what startRegistration/startAuthentication returned).',
  },
  PASSKEY_CHALLENGE_INVALID: {
    status: 400,
    message: 'The passkey challenge is unknown, already used, or was issued for another ceremony; request new options.',
  },
  PASSKEY_CHALLENGE_EXPIRED: { status: 400, message: 'The passkey challenge has expired; request new options.' },
  PASSKEY_ORIGIN_MISMATCH: {
    status: 400,
    message: 'The passkey ceremony ran on an origin this server does not accept.',
  },
  PASSKEY_RPID_MISMATCH: { status: 400, message: 'The passkey was made for another relying party (rpID).' },
  PASSKEY_VERIFICATION_FAILED: { status: 400, message: 'The passkey response could not be verified.' },
  PASSKEY_SIGNATURE_INVALID: { status: 401, message: 'The passkey signature is invalid.' },
  PASSKEY_UNKNOWN_CREDENTIAL: { status: 401, message: 'This passkey is not registered for this account.' },
  PASSKEY_COUNTER_REGRESSION: {
    status: 401,
    message: 'The passkey signature counter went backwards (possibly a cloned authenticator); sign-in refused.',
  },
  PASSKEY_ALREADY_REGISTERED: { status: 409, message: 'This passkey is already registered.' },
  PASSKEY_NOT_FOUND: { status: 404, message: 'No such passkey.' },
  PASSKEY_SESSION_NOT_FRESH: {
    status: 403,
    message: 'Adding a passkey needs a recent sign-in; sign in again and retry.',
  },
  PASSKEY_LAST_SIGN_IN_METHOD: {
    status: 409,
    message: 'This is the last passkey of an account without a password; add a password or another passkey first.',
  },
  EMAIL_NOT_VERIFIED: { status: 403, message: 'Verify your email address first; check your inbox for the link.' },
  INVALID_VERIFICATION_TOKEN: { status: 400, message: 'The link is invalid, expired or already used.' },
  INVALID_RESET_TOKEN: { status: 400, message: 'The reset link is invalid, expired or already used.' },
  INVALID_PASSWORD: { status: 401, message: 'The current password is wrong.' },
  REAUTH_REQUIRED: {
    status: 403,
    message: 'Sign in again (or send a current two-factor code in X-2FA-Code) to do this.',
  },
  TWO_FACTOR_ALREADY_ENABLED: { status: 409, message: 'Two-factor authentication is already enabled.' },
  TWO_FACTOR_NOT_ENABLED: { status: 400, message: 'Two-factor authentication is not enabled.' },
  TWO_FACTOR_INVALID_CODE: { status: 401, message: 'The two-factor code is wrong.' },
  TWO_FACTOR_CHALLENGE_INVALID: {
    status: 401,
    message: 'The pending sign-in is invalid, expired or already used; sign in again.',
  },
  TWO_FACTOR_LOCKED: { status: 429, message: 'Too many wrong two-factor codes; sign in again later.' },
  TWO_FACTOR_REQUIRED: {
    status: 403,
    message: 'This account uses two-factor authentication: sign in with its password and code, or a passkey.',
  },
  // Sign-in by OAuth / OIDC, magic link and anonymous trial (src/accounts/).
  FEATURE_DISABLED: { status: 404, message: 'This sign-in method is not enabled.' },
  OAUTH_PROVIDER_UNKNOWN: { status: 404, message: 'No such OAuth provider is configured.' },
  OAUTH_ACCOUNT_NOT_FOUND: { status: 404, message: 'No linked account of this provider.' },
  LAST_SIGN_IN_METHOD: { status: 409, message: 'This is the last way to sign in to the account; add another first.' },
  SESSION_NOT_FRESH: { status: 403, message: 'Sign in again to do this.' },
  EXCHANGE_CODE_INVALID: { status: 400, message: 'The code is invalid, expired, used, or not for this verifier.' },
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
  CONNECTION_LIMIT: { status: 429, message: 'Too many open connections for your license.' },
  UPGRADE_REQUIRED: { status: 426, message: 'This route speaks WebSocket only; open it with a WebSocket client.' },
  CHANNEL_ALREADY_LINKED: { status: 409, message: 'This account is already linked to another user.' },
  CHANNEL_LINK_NOT_FOUND: { status: 404, message: 'No such channel link.' },
  CHANNEL_NOT_LINKED: { status: 401, message: 'This Telegram account is not linked to any user; sign in and link it.' },
  TELEGRAM_DISABLED: { status: 503, message: 'The Telegram bot is not configured on this gateway.' },
  TELEGRAM_UNAVAILABLE: { status: 503, message: 'The Telegram Bot API cannot be reached; try again shortly.' },
  TELEGRAM_WEBHOOK_SECRET_INVALID: { status: 401, message: 'The webhook secret token is wrong.' },
  WIDGET_SIGNATURE_INVALID: { status: 401, message: 'The Telegram login data is not signed by our bot.' },
  WIDGET_EXPIRED: { status: 401, message: 'The Telegram login data is too old; log in with the widget again.' },
  IP_NOT_ALLOWED: { status: 403, message: 'Access from this IP address is not allowed.' },
  ACCOUNT_DISABLED: { status: 403, message: 'This account is disabled.' },
  ADMIN_REQUIRED: { status: 403, message: 'This action requires an administrator.' },
  SESSION_NOT_FOUND: { status: 404, message: 'No such session.' },
  DEVICE_NOT_FOUND: { status: 404, message: 'No such device.' },
  USER_NOT_FOUND: { status: 404, message: 'No such user.' },
  IP_ALLOWLIST_LOCKOUT: {
    status: 409,
    message: 'This allow list does not include the address you are connecting from; it would lock you out.',
  },
  LAST_ADMIN: { status: 409, message: 'This is the last administrator; make another one first.' },
  ADMIN_BY_CONFIG: {
    status: 409,
    message: 'This address is an administrator by configuration (admin.emails); remove it there first.',
  },
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
