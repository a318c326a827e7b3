import type {} from '@fastify/swagger';
import { TWO_FACTOR_ERROR_CODES } from 'better-auth/plugins/two-factor';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError, type ErrorCode } from '../errors/index.js';
import { betterAuthBodyField } from '../http/better-auth-body.js';
import { CLIENT_IP_HEADER, clientIpOf } from './better-auth.js';
import type { AuthEngine } from './engine.js';
import { ChallengeExhausted } from './two-factor.js';

/** A session a request to the mount carries, as the gateway admitted it. */
export interface MountedSession {
  sessionId: string;
  userId: string;
  /** Set when admitting our JWT extended the session: its fresh token, handed back in X-Auth-Token. */
  renewedToken?: string;
}

export interface MountOptions {
  engine: AuthEngine;
  baseUrl: string;
  /**
   * Our JWT -> the session it names (null: invalid, expired or revoked), checked as every authentication is: the IP
   * restrictions for `ip` apply (throws IP_NOT_ALLOWED).
   */
  sessionFromJwt(token: string, ip: string): Promise<MountedSession | null>;
  /**
   * A session Better Auth's own credential names (its cookie, or its session token as a bearer): the same checks for
   * `ip` (throws IP_NOT_ALLOWED), so no credential reaches Better Auth's routes from an address its user refuses.
   * Null when the gateway no longer accepts the session (idle, its user disabled).
   */
  admitSession(sessionId: string, ip: string): Promise<MountedSession | null>;
  /** A new session Better Auth just created -> our JWT for it (sent back in X-Auth-Token). */
  jwtForSessionToken(betterAuthToken: string): Promise<string | null>;
  /**
   * Better Auth's sign-out answered success for `session` (admitted or not: a sign-out also ends a session the gateway
   * refuses): make sure it has ended, and record it as POST /auth/logout records it.
   */
  signedOut(session: MountedSession, request: FastifyRequest): Promise<void>;
}

/**
 * Better Auth's HTTP routes the gateway serves at /api/auth/*, each reviewed (test/auth/better-auth-routes.test.ts
 * lists them; an endpoint a Better Auth upgrade adds is not served until it is added here). Everything else answers
 * 404 here: our /auth/* routes do the
 * same with what Better Auth's copies skip (a recent sign-in for sensitive changes, audit rows, lockouts, user
 * verification on passkeys), or the endpoint hands out what no client should get (other sessions' tokens from
 * list-sessions, the TOTP secret, provider access tokens, a password oracle). Our routes that use Better Auth call
 * auth.api directly, which this does not affect. Paths are compared after Better Auth's own normalisation (URL
 * parsing, trailing slashes dropped), exactly: any other spelling is not served.
 */
const SERVED = new Set([
  '/sign-in/email',
  '/sign-up/email',
  '/get-session',
  '/sign-out',
  '/update-user',
  // Not '/request-password-reset': /auth/password/forgot does the same after its answer (Better Auth's wrote the token
  // before answering, so its timing told known addresses apart) and limits reset emails per address.
  '/reset-password',
  // Not '/verify-email': nothing hands out its link (the verification email carries the gateway's own single-use
  // link, /auth/email/verify), and it took any HS256 token signed with auth.secret, the gateway's JWTs included (500).
  // Not '/send-verification-email': it sent a plain verification link to anyone naming an address with an unverified
  // account, which let the address's owner verify a registrant's account, password and all (/auth/email/verify/resend
  // sends a plain link only to a caller signed in to the account).
  // A 2FA sign-in's second step (challenge cookie); stripped of any session below.
  '/two-factor/verify-totp',
  '/two-factor/verify-backup-code',
  '/ok',
  '/error',
]);
/** Served routes with a path parameter: the OAuth callback (our /auth/oauth/* flows end there), the reset link. */
const SERVED_PREFIXES = ['/callback/', '/reset-password/'];
/** With a session, these confirm a pending enrolment (ours: /auth/2fa/confirm, audited) and check codes unlocked. */
const CHALLENGE_ONLY = new Set(['/two-factor/verify-totp', '/two-factor/verify-backup-code']);

/** The Better Auth route a URL names (its path below /api/auth, as Better Auth normalises it), or null. */
export function betterAuthRoute(url: URL): string | null {
  const path = url.pathname.replace(/\/+$/, '');
  return path.startsWith('/api/auth/') ? path.slice('/api/auth'.length) : null;
}

/** Whether the gateway serves Better Auth's route at `route` (see SERVED). */
export function servesBetterAuthRoute(route: string): boolean {
  return (
    SERVED.has(route) ||
    SERVED_PREFIXES.some((prefix) => route.startsWith(prefix) && !route.slice(prefix.length).includes('/'))
  );
}

/** Names the design uses where Better Auth's differ. */
const ALIASES: Record<string, string> = {
  '/api/auth/session': '/api/auth/get-session',
};

// Response headers we never pass through: CORS belongs to @fastify/cors; Better Auth's raw session token is not
// handed out in a header (clients of this gateway hold our JWT or the cookie; its sign-in bodies still carry it, as
// Better Auth's clients expect); length/encoding are recomputed by Fastify.
const DROPPED = new Set(['set-cookie', 'set-auth-token', 'content-length', 'content-encoding', 'transfer-encoding']);

const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]+$/;
/**
 * Better Auth's own "trust this device" cookie (two-factor plugin) skips the 2FA prompt on its sign-in routes. The
 * gateway's trusted devices are the only ones (src/accounts/devices.ts: trusting one takes a recent sign-in, and a
 * sign-in through one is audited), so this cookie is neither passed in nor handed out.
 */
const TRUST_DEVICE_NAME = /^(?:__Secure-)?better-auth\.trust_device$/;
/** Better Auth's session cookies: dropped from a request whose session the gateway no longer accepts. */
const SESSION_COOKIE_NAME = /^(?:__Secure-)?better-auth\.session_(?:token|data)$/;

/**
 * A Cookie header without the cookies `drop` names. Names are read the way Better Auth's parser reads them (split on
 * `;`, the text before the first `=`, trimmed), so no spelling it would accept slips past.
 */
function withoutCookies(header: string, drop: RegExp): string {
  return header
    .split(';')
    .filter((part) => (part.includes('=') ? !drop.test(cookieName(part)) : part.trim() !== ''))
    .map((part) => part.trim())
    .join('; ');
}

/** A cookie's name in a Cookie or Set-Cookie header: the text before the first `=`, trimmed. */
function cookieName(cookie: string): string {
  return cookie.slice(0, cookie.indexOf('=')).trim();
}
const SESSION_COOKIE = /(?:^|;\s*)(?:__Secure-)?better-auth\.session_token=([^;]*)/;

/** The route the mount registers: the security plugin leaves the origin checks of what reaches it to Better Auth. */
export const BETTER_AUTH_MOUNT_URL = '/api/auth/*';

/**
 * Mounts Better Auth at /api/auth/*. The raw body bytes are passed through untouched (an encapsulated buffer parser:
 * re-serialising a parsed body breaks empty JSON bodies and form posts), the client IP is Fastify's, and our bearer
 * JWT is accepted by translating it to the session Better Auth knows.
 */
export const betterAuthMount = fp<MountOptions>(
  async (app: FastifyInstance, options) => {
    await app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
      scope.route({
        method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
        url: BETTER_AUTH_MOUNT_URL,
        schema: { hide: true },
        handler: (request, reply) => forward(request, reply, options),
      });
    });
  },
  { name: 'better-auth-mount' },
);

async function forward(request: FastifyRequest, reply: FastifyReply, options: MountOptions): Promise<FastifyReply> {
  const url = new URL(request.url, options.baseUrl);
  url.pathname = ALIASES[url.pathname] ?? url.pathname;
  const route = betterAuthRoute(url);
  if (route === null || !servesBetterAuthRoute(route)) throw new AppError('NOT_FOUND');
  // The OAuth callback is a GET that can change the user (an anonymous user linking a provider becomes a registered
  // one): its answer waits until cached authentications have caught up, as a POST's does (session-cache.plugin.ts).
  if (route.startsWith('/callback/')) request.changedSessions = true;
  if (Buffer.isBuffer(request.body) && bodyCarriesNul(request.headers['content-type'], request.body)) {
    throw new AppError('VALIDATION_FAILED', 'Text may not contain NUL characters.');
  }
  // Better Auth writes update-user's body into the user row as it comes: it is checked, then forwarded as checked.
  const forwardedBody =
    route === '/update-user' && request.method === 'POST'
      ? Buffer.from(checkedUpdateUserBody(request.headers['content-type'], request.body))
      : request.body;
  // Sign-up writes name and image into the new user row as they come: the same rules, on the body Better Auth reads.
  // Its email: a sign-up that lost the unique index to another of that address is answered as for a taken address.
  let signUpEmail: string | null = null;
  if (route === '/sign-up/email' && request.method === 'POST' && Buffer.isBuffer(request.body)) {
    await checkSignUpBody(request.headers['content-type'], request.body);
    signUpEmail = await betterAuthBodyField(request.headers['content-type'], request.body, 'email');
  }

  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || name === CLIENT_IP_HEADER) continue;
    if (name === 'cookie' && typeof value === 'string') {
      const kept = withoutCookies(value, TRUST_DEVICE_NAME);
      if (kept) headers.set(name, kept);
      continue;
    }
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  headers.set(CLIENT_IP_HEADER, clientIpOf(request));
  if (forwardedBody !== request.body) headers.delete('content-length');

  if (CHALLENGE_ONLY.has(route)) {
    // The second step of a 2FA sign-in: only its challenge cookie counts. Better Auth would take a session first.
    headers.delete('authorization');
    const cookie = withoutCookies(headers.get('cookie') ?? '', SESSION_COOKIE_NAME);
    if (cookie) headers.set('cookie', cookie);
    else headers.delete('cookie');
    // Better Auth accepts a TOTP code for as long as it is valid (90 s), as often as it is sent, and compares every
    // guess in flight before counting any: the gateway counts each code first and accepts each TOTP code once per
    // account (RFC 6238 section 5.2), here as on /auth/2fa/verify.
    if (request.method === 'POST' && Buffer.isBuffer(forwardedBody)) {
      const code = await betterAuthBodyField(request.headers['content-type'], forwardedBody, 'code');
      const challenge = options.engine.twoFactor.challengeOfRequest(cookie || undefined);
      const method = route === '/two-factor/verify-totp' ? 'totp' : 'backup_code';
      const refused = code && challenge ? await codeRefusal(options, challenge, code, method) : null;
      if (refused) {
        if (refused.retryAfter) reply.header('retry-after', String(refused.retryAfter));
        return reply.code(refused.status).send(refused.body);
      }
    }
  }

  // The session the request carries, once admitted; a sign-out's, admitted or not (what it ends).
  let session: MountedSession | null = null;
  const bearer = /^Bearer\s+(\S+)$/i.exec(headers.get('authorization') ?? '')?.[1];
  // A sign-out with a bearer ends the bearer's session (Better Auth takes it over the cookie), and Better Auth then
  // clears the browser's session cookies: the session those name, when it is another one that stays alive.
  let cookieSession: { sessionId: string } | null = null;
  if (bearer && JWT_SHAPE.test(bearer)) {
    session = await options.sessionFromJwt(bearer, request.ip);
    const token = session ? await options.engine.sessionToken(session.sessionId) : null;
    if (!token) throw new AppError('INVALID_TOKEN');
    headers.set('authorization', `Bearer ${token}`);
  } else if (headers.has('cookie') || headers.has('authorization')) {
    // Any other credential is Better Auth's own (its cookie, or its session token however the bearer is spelled):
    // Better Auth says which session it names, in its own parsing, and the Authenticator whether it may be used here.
    // A session the gateway has ended (idle, its user disabled) goes to Better Auth as no session at all, except to
    // sign-out: a sign-out ends the session it names, so Better Auth deletes it and clears its cookies, and it is
    // recorded, as any other (stripped, it stayed in place behind an answer of success).
    const named = await options.engine.sessionFromHeaders(headers);
    session = named ? await options.admitSession(named.sessionId, request.ip) : null;
    if (named && !session && route === '/sign-out') {
      session = named;
    } else if (named && !session) {
      headers.delete('authorization');
      const cookie = withoutCookies(headers.get('cookie') ?? '', SESSION_COOKIE_NAME);
      if (cookie) headers.set('cookie', cookie);
      else headers.delete('cookie');
    }
  }

  // Whatever form the bearer takes (our JWT or Better Auth's own token), the session the cookie names, read apart.
  const cookie = headers.get('cookie');
  if (route === '/sign-out' && bearer && cookie && SESSION_COOKIE.test(cookie)) {
    cookieSession = await options.engine.sessionFromHeaders(new Headers({ cookie }));
  }

  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && Buffer.isBuffer(forwardedBody);
  // Better Auth's routes sit under base_url's path (better-auth.ts): a prefix the proxy stripped goes back on.
  url.pathname = `${new URL(options.baseUrl).pathname.replace(/\/+$/, '')}${url.pathname}`;
  const forwarded = new Request(url, {
    method: request.method,
    headers,
    body: hasBody ? new Uint8Array(forwardedBody as Buffer) : undefined,
  });
  // A password sign-in is held to the password it verified (password-race.ts); without an email Better Auth refuses it.
  const signInEmail =
    route === '/sign-in/email' && request.method === 'POST' && Buffer.isBuffer(forwardedBody)
      ? await betterAuthBodyField(request.headers['content-type'], forwardedBody, 'email')
      : null;
  const response = signInEmail
    ? await options.engine.handleSignIn(forwarded, signInEmail)
    : signUpEmail
      ? await options.engine.handleSignUp(forwarded, signUpEmail)
      : await options.engine.handle(forwarded);

  const body = Buffer.from(await response.arrayBuffer());
  if (response.status >= 400 && response.status < 500 && body.length === 0) {
    // Better Auth answers some refusals with no body at all (a served path asked with another method: 404, as its
    // router says it): they get the gateway's error envelope, as every other refusal does.
    throw new AppError(BODYLESS_REFUSALS[response.status] ?? 'BAD_REQUEST');
  }

  reply.status(response.status);
  response.headers.forEach((value, name) => {
    if (!DROPPED.has(name) && !name.startsWith('access-control-')) reply.header(name, value);
  });
  // A sign-out that ended the bearer's session leaves the browser's cookies alone when they name another live one:
  // clearing them would sign the browser out of a session that goes on. (/auth/logout does the same.)
  const keepCookies = cookieSession !== null && cookieSession.sessionId !== session?.sessionId;
  const cookies = keepCookies
    ? []
    : response.headers.getSetCookie().filter((c) => !TRUST_DEVICE_NAME.test(cookieName(c)));
  if (cookies.length > 0) reply.header('set-cookie', cookies);

  const newToken = cookies.map((c) => SESSION_COOKIE.exec(c)?.[1]).find((v) => v);
  if (newToken && response.ok) {
    const jwt = await options.jwtForSessionToken(decodeURIComponent(newToken).split('.')[0] ?? '');
    if (jwt) reply.header('x-auth-token', jwt);
  }
  // Admitting the bearer extended its session (sliding expiry): the client learns the new token here, as on /auth/*,
  // or it is signed out at its old token's exp while the session lives on. Not after a sign-out: nothing to renew.
  if (session?.renewedToken && route !== '/sign-out' && !reply.hasHeader('x-auth-token')) {
    reply.header('x-auth-token', session.renewedToken);
  }

  if (route === '/sign-out' && response.ok && session) await options.signedOut(session, request);

  if (response.status >= 500) {
    // Better Auth's own 5xx answers carry {code, message} (never a request's secrets): keep them for the log only.
    let error: { code?: unknown; message?: unknown } | null = null;
    try {
      error = JSON.parse(body.toString('utf8'));
    } catch {}
    request.log.error(
      {
        status: response.status,
        code: String(error?.code ?? '').slice(0, 100),
        message: String(error?.message ?? '').slice(0, 200),
      },
      'better-auth answered with a server error',
    );
    throw new AppError('INTERNAL_ERROR');
  }
  return reply.send(body);
}

/** Our codes for Better Auth's refusals that come without a body. */
const BODYLESS_REFUSALS: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'AUTH_REQUIRED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
};

/** Longest name: what POST /auth/register takes (src/channels/rest/auth.schemas.ts), in characters. */
const NAME_MAX_LENGTH = 100;
/**
 * Longest image URL: 2048 is the practical limit of a link across browsers, servers and CDNs, and keeps the user row
 * (read with every session) small. An image is a link to a picture stored elsewhere, not a data: URL.
 */
const IMAGE_MAX_LENGTH = 2048;
/** The user fields POST /update-user may change (README: name, image); Better Auth would write any other it knows. */
const UPDATABLE_USER_FIELDS = new Set(['name', 'image']);

/**
 * The body of POST /update-user as it is forwarded, once checked. Better Auth takes any JSON object there and writes
 * its values into the user row unchecked: `null` as a name ended in a NOT NULL violation, a deeply nested array in a
 * stack overflow in the driver (both 500), arrays and objects were stored as their text, a 60 KB name was taken.
 * Here `name` is a string with registration's rules (at most 100 characters, trimmed), `image` an http(s) URL or
 * null, and nothing else may be set. The checked object is serialised again, so Better Auth parses exactly what was
 * checked (no second reading of the bytes that could differ: a byte order mark, a duplicate key).
 */
export function checkedUpdateUserBody(contentType: string | undefined, body: unknown): string {
  if ((contentType ?? '').split(';')[0]?.trim().toLowerCase() !== 'application/json') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : '');
  } catch {
    throw new AppError('MALFORMED_JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new AppError('VALIDATION_FAILED', 'The body must be a JSON object.');
  }
  const checked: { name?: string; image?: string | null } = {};
  for (const [field, value] of Object.entries(parsed)) {
    if (!UPDATABLE_USER_FIELDS.has(field)) {
      throw new AppError('VALIDATION_FAILED', `${field} cannot be changed here; only name and image can.`, { field });
    }
    if (field === 'name') checked.name = checkedName(value);
    else checked.image = checkedImage(value);
  }
  return JSON.stringify(checked);
}

/**
 * The gateway's verdict on a 2FA sign-in code before Better Auth's verify route sees it (two-factor.ts,
 * claimSignInCode), as that route answers its own refusals: Better Auth's status, body and code (INVALID_CODE,
 * INVALID_BACKUP_CODE, TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE, ACCOUNT_TEMPORARILY_LOCKED with Retry-After), which clients
 * of Better Auth's library read. Null: let it through.
 */
async function codeRefusal(
  options: MountOptions,
  challenge: string,
  code: string,
  method: 'totp' | 'backup_code',
): Promise<{ status: number; body: { code: string; message: string }; retryAfter?: number } | null> {
  try {
    await options.engine.twoFactor.claimSignInCode(challenge, code, method);
    return null;
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    const { INVALID_CODE, INVALID_BACKUP_CODE, TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE, ACCOUNT_TEMPORARILY_LOCKED } =
      TWO_FACTOR_ERROR_CODES;
    const answer = ({ code, message }: { code: string; message: string }) => ({ code, message });
    if (err.code === 'TWO_FACTOR_INVALID_CODE') {
      return { status: 401, body: answer(method === 'totp' ? INVALID_CODE : INVALID_BACKUP_CODE) };
    }
    // The challenge's attempts are spent, the account is not locked: nothing to wait for, the client signs in again.
    if (err instanceof ChallengeExhausted) return { status: 400, body: answer(TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE) };
    if (err.code === 'TWO_FACTOR_LOCKED') {
      return { status: 429, body: answer(ACCOUNT_TEMPORARILY_LOCKED), retryAfter: err.details.retryAfter };
    }
    throw err;
  }
}

/**
 * POST /sign-up/email's body, checked with update-user's rules for the name and image Better Auth writes into the new
 * user row (a 60 KB name and `javascript:` as an image were taken). Read as Better Auth reads it, JSON or form, and
 * forwarded as it came: a field that is not a string (or a null image) Better Auth refuses itself.
 */
async function checkSignUpBody(contentType: string | undefined, body: Buffer): Promise<void> {
  const name = await betterAuthBodyField(contentType, body, 'name');
  if (name !== null) checkedName(name);
  const image = await betterAuthBodyField(contentType, body, 'image');
  if (image !== null) checkedImage(image);
}

/** Registration's rule for a name: a string of at most 100 characters; trimmed. */
function checkedName(value: unknown): string {
  if (typeof value !== 'string' || [...value].length > NAME_MAX_LENGTH) {
    throw new AppError('VALIDATION_FAILED', `name must be a string of at most ${NAME_MAX_LENGTH} characters.`, {
      field: 'name',
    });
  }
  return value.trim();
}

function checkedImage(value: unknown): string | null {
  if (value === null || isImageUrl(value)) return value;
  const message = `image must be null or an http(s) URL of at most ${IMAGE_MAX_LENGTH} characters.`;
  throw new AppError('VALIDATION_FAILED', message, { field: 'image' });
}

function isImageUrl(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > IMAGE_MAX_LENGTH) return false;
  try {
    const { protocol } = new URL(value);
    return protocol === 'https:' || protocol === 'http:';
  } catch {
    return false;
  }
}

const hasNul = (text: string) => text.includes('\u0000');

/**
 * Whether a body forwarded to Better Auth carries a NUL character in a key or value. PostgreSQL text cannot hold one,
 * so Better Auth's query would fail with a server error (a token or a name with NUL reaching a WHERE or an UPDATE).
 * Paths and query strings are checked for every route by the NUL guard (src/http/nul-guard.plugin.ts); this is the
 * raw body, which only the mount sees.
 */
export function bodyCarriesNul(contentType: string | undefined, body: Buffer): boolean {
  if (body.length === 0) return false;
  const text = body.toString('utf8');
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    for (const [key, value] of new URLSearchParams(text)) if (hasNul(key) || hasNul(value)) return true;
    return false;
  }
  // JSON can only carry NUL escaped (a raw one is invalid JSON, which Better Auth refuses itself).
  if (!text.includes('\\u0000')) return false;
  let found = false;
  try {
    JSON.parse(text, (key, value) => {
      if (hasNul(key) || (typeof value === 'string' && hasNul(value))) found = true;
      return value;
    });
  } catch {
    return false;
  }
  return found;
}
