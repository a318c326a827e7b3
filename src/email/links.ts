/**
 * The absolute URL of a gateway route that an email links to, carrying a single-use token: `path` under
 * server.base_url, keeping the path prefix base_url may carry (a proxy that strips it), with or without a trailing
 * slash.
 */
export function gatewayLink(baseUrl: string, path: string, token: string): string {
  const url = new URL(baseUrl);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`;
  url.searchParams.set('token', token);
  return url.toString();
}
