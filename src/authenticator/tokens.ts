/** Claims of the gateway's HS256 session token. */
export interface TokenClaims {
  sub: string;
  sid: string;
  iat: number;
  exp: number;
}

/** Signs and verifies the gateway's session tokens. verify returns null for any token that is not ours and valid. */
export interface TokenCodec {
  sign(userId: string, sessionId: string, expiresAt: Date): string;
  verify(token: string): TokenClaims | null;
}

interface JwtLike {
  sign(payload: object, options?: object): string;
  verify<T>(token: string): T;
}

/**
 * The codec over @fastify/jwt (registered with HS256 only for both signing and verifying).
 *
 * Tokens that verified are remembered (up to `cacheSize`, oldest dropped first), keyed by the token string itself:
 * the same bytes under the same secret verify the same way, so a repeat skips the HMAC and the JSON parse (about 12
 * microseconds, a third of a cached session check). A remembered token is still refused once past its exp. Nothing
 * that failed is remembered, so a forged token costs its HMAC every time. Revocation is the session's business (the
 * Authenticator checks the session on every use), not the token's.
 */
export function createTokenCodec(jwt: JwtLike, options: { cacheSize?: number } = {}): TokenCodec {
  const cacheSize = options.cacheSize ?? 0;
  const verified = new Map<string, TokenClaims>();
  const check = (token: string): TokenClaims | null => {
    try {
      const claims = jwt.verify<Partial<TokenClaims>>(token);
      if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string' || typeof claims.exp !== 'number') {
        return null;
      }
      return claims as TokenClaims;
    } catch {
      return null;
    }
  };
  return {
    sign(userId, sessionId, expiresAt) {
      const iat = Math.floor(Date.now() / 1000);
      return jwt.sign({ sub: userId, sid: sessionId, iat, exp: Math.floor(expiresAt.getTime() / 1000) });
    },
    verify(token) {
      const known = verified.get(token);
      if (known) {
        if (known.exp * 1000 > Date.now()) return known;
        verified.delete(token);
        return null;
      }
      const claims = check(token);
      if (claims && cacheSize > 0) {
        if (verified.size >= cacheSize) verified.delete(verified.keys().next().value as string);
        verified.set(token, claims);
      }
      return claims;
    },
  };
}
