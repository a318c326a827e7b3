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
