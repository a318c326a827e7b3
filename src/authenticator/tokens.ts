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

/** The codec over @fastify/jwt (registered with HS256 only for both signing and verifying). */
export function createTokenCodec(jwt: JwtLike): TokenCodec {
  return {
    sign(userId, sessionId, expiresAt) {
      const iat = Math.floor(Date.now() / 1000);
      return jwt.sign({ sub: userId, sid: sessionId, iat, exp: Math.floor(expiresAt.getTime() / 1000) });
    },
    verify(token) {
      try {
        const claims = jwt.verify<Partial<TokenClaims>>(token);
        if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string' || typeof claims.exp !== 'number') {
          return null;
        }
        return claims as TokenClaims;
      } catch {
        return null;
      }
    },
  };
}
