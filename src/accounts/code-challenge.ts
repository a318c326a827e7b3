import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * PKCE-style binding of a browser sign-in to the front end that started it (RFC 7636, S256 only). The front end keeps
 * a random verifier, sends its challenge (base64url SHA-256 of the verifier) when it starts an OAuth sign-in or asks
 * for a magic link, and sends the verifier with the one-time code. A code minted in another browser carries another
 * challenge (or none), so it signs nobody in here: that closes login CSRF through a planted ?code=.
 */
export const CODE_CHALLENGE_PATTERN = '^[A-Za-z0-9_-]{43}$';
/** RFC 7636 section 4.1: 43 to 128 unreserved characters. */
export const CODE_VERIFIER_PATTERN = '^[A-Za-z0-9._~-]{43,128}$';

/**
 * Whether `verifier` answers the code's `challenge`. A code bound to a challenge needs its verifier; a code minted
 * without one is refused to a caller that sends a verifier (that front end started a bound flow, so the code is not
 * its own).
 */
export function verifierAnswers(challenge: string | null, verifier: string | undefined): boolean {
  if (challenge === null) return verifier === undefined;
  if (verifier === undefined) return false;
  const computed = createHash('sha256').update(verifier, 'ascii').digest();
  const expected = Buffer.from(challenge, 'base64url');
  return expected.length === computed.length && timingSafeEqual(expected, computed);
}
