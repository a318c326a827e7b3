/**
 * OpenID Connect Discovery 1.0, section 4.3: the issuer a discovery document announces MUST be the issuer URL it was
 * fetched for. Better Auth trusts whatever the document says (and then verifies id tokens against it), so a
 * document announcing another issuer would let that issuer's tokens in. This checks each configured provider and
 * remembers the result; a provider that was unreachable is checked again on its next use.
 */
export interface IssuerCheck {
  /** Checks every provider now (at start). */
  checkAll(): Promise<void>;
  /** 'mismatch' refuses the provider; 'ok' and 'unreachable' let Better Auth proceed (it fails on its own). */
  status(id: string): Promise<'ok' | 'mismatch' | 'unreachable'>;
}

const TIMEOUT_MS = 5000;

export function createIssuerCheck(
  providers: Record<string, { issuer: string }>,
  log: { error(obj: object, msg: string): void },
): IssuerCheck {
  const known = new Map<string, 'ok' | 'mismatch'>();
  const strip = (url: string) => url.replace(/\/+$/, '');

  async function check(id: string): Promise<'ok' | 'mismatch' | 'unreachable'> {
    const configured = providers[id]?.issuer;
    if (!configured) return 'ok';
    let announced: unknown;
    try {
      const res = await fetch(`${strip(configured)}/.well-known/openid-configuration`, {
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      });
      if (!res.ok) return 'unreachable';
      announced = ((await res.json()) as { issuer?: unknown }).issuer;
    } catch {
      return 'unreachable';
    }
    const result = typeof announced === 'string' && strip(announced) === strip(configured) ? 'ok' : 'mismatch';
    if (result === 'mismatch') {
      log.error(
        { provider: id, configured, announced: typeof announced === 'string' ? announced.slice(0, 200) : null },
        'OIDC discovery announces another issuer; the provider is refused',
      );
    }
    known.set(id, result);
    return result;
  }

  return {
    async checkAll() {
      await Promise.all(Object.keys(providers).map(check));
    },
    async status(id) {
      return known.get(id) ?? check(id);
    },
  };
}
