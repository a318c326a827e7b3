import { createHash, randomBytes } from 'node:crypto';

/** A PKCE verifier and its S256 challenge, as a front end makes them (RFC 7636). */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(48).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}
