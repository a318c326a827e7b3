/** Better Auth's session cookies (the JWT is the gateway's credential; these exist only on its cookie routes). */
const SESSION_COOKIES = ['better-auth.session_token', 'better-auth.session_data', 'better-auth.dont_remember'];

/**
 * Expires Better Auth's session cookies in the browser, under the names it gave them: with the `__Secure-` prefix and
 * the Secure attribute when cookies are secure (HTTPS), else a browser keeps the real ones.
 */
export function clearSessionCookies(reply: { header(name: string, value: string[]): unknown }, secure: boolean): void {
  const names = secure ? SESSION_COOKIES.map((n) => `__Secure-${n}`) : SESSION_COOKIES;
  reply.header(
    'set-cookie',
    names.map((n) => `${n}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`),
  );
}
