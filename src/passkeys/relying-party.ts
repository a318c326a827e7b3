import type { Config } from '../config/index.js';

/** Who we are to WebAuthn: the rpID credentials are scoped to, the name browsers show, the origins we accept. */
export interface RelyingParty {
  rpID: string;
  rpName: string;
  /** Origins a ceremony may come from: base_url's, plus trusted origins on the rpID's host or a subdomain of it. */
  origins: string[];
  challengeTtlSeconds: number;
}

/**
 * The relying party follows server.base_url: its hostname is the rpID (a passkey made for it works on that host and
 * its subdomains), and a trusted origin elsewhere (another site's web app) could never produce a valid assertion for
 * this rpID, so listing it would only widen what we accept for nothing.
 */
export function relyingPartyOf(config: Pick<Config, 'server' | 'passkeys'>): RelyingParty {
  const base = new URL(config.server.base_url);
  const rpID = base.hostname;
  const origins = [base.origin];
  for (const candidate of config.server.trusted_origins) {
    let url: URL;
    try {
      url = new URL(candidate);
    } catch {
      continue;
    }
    const host = url.hostname;
    if ((host === rpID || host.endsWith(`.${rpID}`)) && !origins.includes(url.origin)) origins.push(url.origin);
  }
  return { rpID, rpName: config.passkeys.rp_name, origins, challengeTtlSeconds: config.passkeys.challenge_ttl };
}
