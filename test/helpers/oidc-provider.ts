/**
 * A real OpenID Connect provider (the `oidc-provider` package) on 127.0.0.1 for OAuth tests, and a small user agent
 * that drives its sign-in and consent pages over plain HTTP with a cookie jar (no browser).
 *
 * Accounts are configured per test: `accounts[id] = { email, email_verified, name }`. The devInteractions pages
 * sign in whichever account id is submitted; consent is granted by submitting the consent form.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface OidcAccount {
  email: string;
  email_verified: boolean;
  name?: string;
}

export interface OidcProvider {
  /** Where the provider listens (its discovery document is under this URL). */
  url: string;
  /** The issuer it announces: `url` unless started with issuerPath. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  accounts: Record<string, OidcAccount>;
  close(): Promise<void>;
}

export async function startOidcProvider(options: {
  redirectUris: string[];
  clientId?: string;
  clientSecret?: string;
  /** The issuer the provider announces; default: its own URL (a different one simulates a wrong issuer). */
  issuerPath?: string;
}): Promise<OidcProvider> {
  const accounts: Record<string, OidcAccount> = {};
  const clientId = options.clientId ?? 'gateway-client';
  const clientSecret = options.clientSecret ?? 'gateway-client-secret-0123456789abcdef';
  let handler: ((req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void) | null =
    null;
  const server: Server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const issuer = `${url}${options.issuerPath ?? ''}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: options.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    pkce: { required: () => true },
    // Scope claims (email, email_verified, name) in the id token too, as Google does; the default puts them only
    // behind the userinfo endpoint.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    cookies: { keys: ['test-cookie-key-0123456789'] },
    ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 600, IdToken: 600, Interaction: 600, Session: 600 },
    async findAccount(_ctx: unknown, id: string) {
      const account = accounts[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...account };
        },
      };
    },
  });
  handler = provider.callback();

  return {
    url,
    issuer,
    clientId,
    clientSecret,
    accounts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A cookie jar keyed by cookie name (tests talk to one host per jar). */
export class CookieJar {
  private readonly cookies = new Map<string, string>();
  store(setCookie: string[] | string | undefined): void {
    const list = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [];
    for (const c of list) {
      const [pair] = c.split(';');
      const i = pair?.indexOf('=') ?? -1;
      if (!pair || i < 1) continue;
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (/max-age=0/i.test(c) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  has(name: string): boolean {
    return this.cookies.has(name);
  }
}

/**
 * Follows the provider's pages from an authorization URL until it redirects outside the provider: signs in as
 * `accountId` and grants consent. Returns that final redirect (the client's redirect_uri with code, state and iss).
 */
export async function authorizeAtProvider(authorizeUrl: string, accountId: string): Promise<URL> {
  const jar = new CookieJar();
  const origin = new URL(authorizeUrl).origin;
  let next: { url: string; method: 'GET' | 'POST'; body?: string } = { url: authorizeUrl, method: 'GET' };
  for (let hop = 0; hop < 20; hop++) {
    const res = await fetch(next.url, {
      method: next.method,
      redirect: 'manual',
      headers: {
        cookie: jar.header(),
        ...(next.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: next.body,
    });
    jar.store(res.headers.getSetCookie());
    const location = res.headers.get('location');
    if (location) {
      const target = new URL(location, next.url);
      if (target.origin !== origin) return target;
      next = { url: target.toString(), method: 'GET' };
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`provider answered ${res.status}: ${html.slice(0, 300)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const prompt = /name="prompt" value="(\w+)"/.exec(html)?.[1];
    if (!action || !prompt) throw new Error(`unexpected provider page: ${html.slice(0, 300)}`);
    const form = new URLSearchParams({ prompt });
    if (prompt === 'login') {
      form.set('login', accountId);
      form.set('password', 'any');
    }
    next = {
      url: new URL(action.replaceAll('&amp;', '&'), next.url).toString(),
      method: 'POST',
      body: form.toString(),
    };
  }
  throw new Error('too many redirects at the provider');
}
