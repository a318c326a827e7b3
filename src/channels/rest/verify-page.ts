import type { FastifyInstance } from 'fastify';
import { escapeHtml } from '../../email/templates.js';

/**
 * The page an emailed verification link opens. A GET only shows it: link scanners (Safe Links and the like) fetch
 * every link in a message, and a GET that verified would prove an address nobody confirmed (for whoever registered it
 * with their own password). The button POSTs the token as a form; the answer to that is a page too.
 */
export const VERIFY_PAGE_CSP = pageCsp();

/**
 * The pages' Content-Security-Policy. Browsers check form-action on the redirects that follow a form's submission too
 * (Chrome does): a form whose answer redirects elsewhere (a magic link's, to the front end) needs that origin listed,
 * or the browser stops at the redirect with the link already spent.
 */
export function pageCsp(redirectsTo = ''): string {
  const target = redirectsTo ? ` ${new URL(redirectsTo).origin}` : '';
  return `default-src 'none'; form-action 'self'${target}; frame-ancestors 'none'; base-uri 'none'`;
}

/**
 * The pages' Referrer-Policy. Not the API's no-referrer: under it a browser sends `Origin: null` with the form's POST,
 * which the cross-site check (security.plugin.ts) refuses when the browser also holds a cookie here. same-origin
 * sends the page's origin (and, only to this server, its URL) and nothing to any other site: the token in the page's
 * URL never leaves for the front end or a link.
 */
export const PAGE_REFERRER_POLICY = 'same-origin';

export function verifyPage(token: string): string {
  return confirmPage(
    'Verify your email address',
    'Confirm that this email address is yours.',
    'Verify my email address',
    token,
  );
}

/**
 * The page an emailed sign-in link opens, for the same reason: a GET that signed in would spend the link on the
 * scanner's fetch, and (without a front-end redirect URL) hand the scanner the session token.
 */
export function magicLinkPage(token: string): string {
  return confirmPage('Sign in', 'Continue to sign in with the link from your email.', 'Sign in', token);
}

/** A page whose one button POSTs `token` as a form to the page's own path (relative: under base_url's prefix). */
function confirmPage(title: string, message: string, button: string, token: string): string {
  return page(
    title,
    message,
    `<form method="post" action="verify"><input type="hidden" name="token" value="${escapeHtml(token)}">` +
      `<button type="submit">${escapeHtml(button)}</button></form>`,
  );
}

export function verifiedPage(ok: boolean, message: string): string {
  return page(ok ? 'Email address verified' : 'This link cannot be used', message, '');
}

function page(title: string, message: string, body: string): string {
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>${body}` +
    '</body></html>'
  );
}

/**
 * Lets `scope` take the form a page's button posts (application/x-www-form-urlencoded, at most 1 KB, fields as
 * strings). Only for the scope of that page's POST route: no other route takes forms.
 */
export function acceptPageForm(scope: FastifyInstance): void {
  scope.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 1024 },
    (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );
}
