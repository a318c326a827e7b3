/**
 * The /ws/chat protocol: JSON text frames, one object per frame, each with a `type`. Documented in README.md
 * ("WebSocket chat"); codes and close codes are API: add, never rename or reuse.
 */

/** Close codes the gateway uses (4000-4999 are for applications, RFC 6455 section 7.4.2). */
export const CloseCode = {
  /** Server shutting down (RFC 6455). */
  GOING_AWAY: 1001,
  /** A text frame that is not valid UTF-8 (RFC 6455; sent by ws itself). */
  INVALID_PAYLOAD: 1007,
  /** Frame larger than websocket.max_frame_bytes (RFC 6455; sent by ws itself). */
  TOO_BIG: 1009,
  /** Unexpected server error. */
  INTERNAL_ERROR: 1011,
  /** Too many sockets waiting to authenticate (websocket.max_unauthenticated); retry shortly. */
  TRY_AGAIN_LATER: 1013,
  /** Authentication failed: invalid token, or something other than an auth frame came first. */
  AUTH_FAILED: 4401,
  /** Not allowed: the license lacks the chat feature. */
  FORBIDDEN: 4403,
  /** No auth frame within websocket.auth_timeout. */
  AUTH_TIMEOUT: 4408,
  /** The session ended (logout, revocation, password change, user deleted) or expired. */
  SESSION_ENDED: 4409,
  /** Over a license limit (max_ws_connections). */
  LIMIT: 4429,
} as const;

/** Codes in `auth_error` and `error` frames. */
export type WsErrorCode =
  | 'AUTH_REQUIRED'
  | 'AUTH_TIMEOUT'
  | 'INVALID_TOKEN'
  | 'ALREADY_AUTHENTICATED'
  | 'AUTH_PENDING'
  | 'FORBIDDEN'
  | 'IP_NOT_ALLOWED'
  | 'CONNECTION_LIMIT'
  | 'RATE_LIMITED'
  | 'MALFORMED_JSON'
  | 'BINARY_NOT_SUPPORTED'
  | 'UNKNOWN_TYPE'
  | 'INVALID_MESSAGE'
  | 'CHAT_UNAVAILABLE'
  | 'SESSION_REVOKED'
  | 'SESSION_EXPIRED'
  | 'INTERNAL_ERROR';

export const MAX_ID_LENGTH = 128;
export const MAX_TOKEN_LENGTH = 4096;

export type ClientFrame =
  | { type: 'auth'; token: string }
  | { type: 'ping' }
  | { type: 'message'; id: string; text: string };

export type ServerFrame =
  | { type: 'auth_ok'; userId: string; license: string; expiresAt: string | null; token?: string }
  | { type: 'auth_error'; code: WsErrorCode }
  | { type: 'pong' }
  | { type: 'reply'; id: string; text: string }
  | { type: 'reply_end'; id: string }
  | { type: 'error'; code: WsErrorCode; id?: string; retryAfter?: number };

/** Parses a text frame: an object with a string `type`, or the error code that says why not. */
export function parseFrame(text: string): { type: string; [k: string]: unknown } | 'MALFORMED_JSON' {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'MALFORMED_JSON';
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return 'MALFORMED_JSON';
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') return 'MALFORMED_JSON';
  return value as { type: string };
}
