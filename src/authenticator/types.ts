import type { License } from '../licenses/index.js';

export type Channel = 'rest' | 'websocket' | 'telegram';

/** Who is calling, on which channel, with which license: what every channel gets from the Authenticator. */
export interface AuthContext {
  userId: string;
  /** The session the credential belongs to; null for channels authenticated by a link (Telegram). */
  sessionId: string | null;
  email: string;
  name: string;
  license: License;
  channel: Channel;
  /** When the session ends unless it is used again; null without a session. */
  expiresAt: Date | null;
  /** Set when this authentication extended the session: a fresh token carrying the new expiry. */
  renewedToken?: string;
  /**
   * Set when this authentication extended a cookie session: the Set-Cookie values (Better Auth's refreshed session
   * cookie) the answer must carry, or the browser drops the cookie at its old expiry while the session lives on.
   */
  renewedCookies?: string[];
}
