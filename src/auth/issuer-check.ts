/**
 * OpenID Connect Discovery 1.0, section 4.3: the issuer a discovery document announces MUST be the issuer URL it was
 * fetched for. Better Auth trusts whatever the document says (and then verifies id tokens against it), so a
 * document announcing another issuer would let that issuer's tokens in. This checks each configured provider and
 * remembers the result for `ttlMs` (5 minutes): a provider whose document changes is refused (or admitted again, once
 * fixed) within that time, without a restart. A provider that was unreachable is checked again on its next use;
 * concurrent uses share one check.
 */
export interface IssuerCheck {
  /** Checks every provider now (at start). */
  checkAll(): Promise<void>;
  /**
   * 'mismatch' (another issuer, or no document at the discovery URL) refuses the provider; 'ok' and 'unreachable' (no
   * answer, a timeout or a 5xx) let Better Auth proceed (it fails on its own).
   */
  status(id: string): Promise<'ok' | 'mismatch' | 'unreachable'>;
}

const TIMEOUT_MS = 5000;
const TTL_MS = 5 * 60_000;

export function createIssuerCheck(
  providers: Record<string, { issuer: string }>,
  log: { error(obj: object, msg: string): void },
  options: { ttlMs?: number; now?: () => number } = {},
): IssuerCheck {
  const ttlMs = options.ttlMs ?? TTL_MS;
  const now = options.now ?? Date.now;
  const known = new Map<string, { result: 'ok' | 'mismatch'; at: number }>();
  const running = new Map<string, Promise<'ok' | 'mismatch' | 'unreachable'>>();
  const strip = (url: string) => url.replace(/\/+$/, '');

  async function check(id: string): Promise<'ok' | 'mismatch' | 'unreachable'> {
    const configured = providers[id]?.issuer;
    if (!configured) return 'ok';
    let status: number;
    let body: string;
    try {
      // The configured discovery URL must answer the document itself. Better Auth follows redirects and trusts the
      // issuer the target announces, so a redirect (kept as the 3xx answer here) is refused like another issuer.
      const res = await fetch(`${strip(configured)}/.well-known/openid-configuration`, {
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'manual',
      });
      status = res.status;
      body = await res.text();
    } catch {
      return 'unreachable';
    }
    // Only an outage (no answer, a timeout, a 5xx, a 429 asking to come back later) is not a verdict: Better Auth then
    // fails on its own. Any other answer that is not a document announcing the configured issuer (3xx, 4xx, not
    // JSON, no issuer) refuses.
    if (status >= 500 || status === 429) return 'unreachable';
    const announced = status >= 200 && status < 300 ? issuerOf(body) : undefined;
    const result = typeof announced === 'string' && strip(announced) === strip(configured) ? 'ok' : 'mismatch';
    if (result === 'mismatch') {
      log.error(
        { provider: id, configured, status, announced: typeof announced === 'string' ? announced.slice(0, 200) : null },
        'OIDC discovery does not announce the configured issuer; the provider is refused',
      );
    }
    known.set(id, { result, at: now() });
    return result;
  }

  /** One check per provider at a time: the uses that arrive meanwhile wait for it. */
  function checkOnce(id: string): Promise<'ok' | 'mismatch' | 'unreachable'> {
    let pending = running.get(id);
    if (!pending) {
      pending = check(id).finally(() => running.delete(id));
      running.set(id, pending);
    }
    return pending;
  }

  return {
    async checkAll() {
      await Promise.all(Object.keys(providers).map(checkOnce));
    },
    async status(id) {
      const entry = known.get(id);
      return entry && now() - entry.at < ttlMs ? entry.result : checkOnce(id);
    },
  };
}

function issuerOf(document: string): unknown {
  try {
    return (JSON.parse(document) as { issuer?: unknown } | null)?.issuer;
  } catch {
    return undefined;
  }
}
