import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';

/**
 * Everything that might carry a credential is redacted before a line is written: headers, any body field with a
 * secret's name, query strings (reset and verification links carry tokens there) and secret path segments (see
 * SECRET_PATH_AFTER).
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-telegram-bot-api-secret-token"]',
  'req.headers["x-2fa-code"]',
  'req.headers["x-device-id"]',
  'res.headers["set-cookie"]',
  'res.headers["x-auth-token"]',
  '*.password',
  '*.newPassword',
  '*.currentPassword',
  '*.token',
  '*.secret',
  '*.code',
  '*.credential',
  '*.challengeToken',
  '*.backupCodes',
  '*.otpauthUri',
  '*.client_secret',
  '*.bot_token',
  '*.webhook_secret',
  // Node's error for a request it could not parse carries the raw bytes read so far: headers and body alike.
  '*.rawPacket',
  // A database error carries the values of the failing statement: PGlite's its parameters, PostgreSQL's its detail
  // ("Failing row contains (...)", "Key (token)=(...)"), which can be a password hash or a session token.
  '*.params',
  '*.detail',
  '*.cause.params',
  '*.cause.detail',
];

const REQUEST_ID = /^[\w.-]{1,64}$/;

export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req(req: { method: string; url: string; ip?: string; id?: string }) {
        return { method: req.method, url: loggedUrl(req.url), ip: req.ip };
      },
      res(res: { statusCode: number }) {
        return { statusCode: res.statusCode };
      },
    },
  };
}

/** A client's X-Request-Id is kept when it is short and plain; otherwise a fresh UUID. */
export function genReqId(req: { headers: Record<string, string | string[] | undefined> }): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/**
 * Path segments after which a served route carries a secret in the path itself: Better Auth's reset link
 * `GET /api/auth/reset-password/:token` (src/auth/mount.plugin.ts). Every other link or callback with a token, code or
 * state has it in the query, whose values are never logged: the gateway's email verification (/auth/email/verify),
 * magic link (/auth/magic-link/verify) and reset page links, the OAuth callbacks (/api/auth/callback/:provider, whose
 * parameter is the provider's id). A route added with a secret in its path adds its segment here.
 */
export const SECRET_PATH_AFTER: ReadonlySet<string> = new Set(['reset-password']);

/** What the log keeps of a request URL: no query values, no secret path segments. */
export function loggedUrl(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? redactSecretPath(url) : stripQuery(`${redactSecretPath(url.slice(0, q))}${url.slice(q)}`);
}

/**
 * The path without whatever follows a segment of SECRET_PATH_AFTER. Segments are compared as a router might read them
 * (percent-decoded, any case, `\` as `/`, tabs and newlines dropped, as URL parsing does), and everything after the
 * segment goes, not just the next one: a trailing slash, a dot segment or a `\` still reach the route
 * (`/api/auth/./reset-password/TOKEN/` is served), and a mistyped path must not log the token either.
 */
export function redactSecretPath(path: string): string {
  let start = 0;
  for (let i = 0; i < path.length - 1; i++) {
    if (path[i] !== '/' && path[i] !== '\\') continue;
    if (SECRET_PATH_AFTER.has(segmentName(path.slice(start, i)))) return `${path.slice(0, i + 1)}[redacted]`;
    start = i + 1;
  }
  return path;
}

const IGNORED_IN_PATH = /[\t\n\r]/g;

function segmentName(segment: string): string {
  const plain = segment.replace(IGNORED_IN_PATH, '');
  try {
    return decodeURIComponent(plain).toLowerCase();
  } catch {
    return plain.toLowerCase();
  }
}

/** Query values are dropped from logged URLs; their names stay. */
export function stripQuery(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const names = url
    .slice(q + 1)
    .split('&')
    .map((p) => p.split('=')[0])
    .filter(Boolean);
  return `${url.slice(0, q)}?${names.map((n) => `${n}=[redacted]`).join('&')}`;
}

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type LogFn = (...args: unknown[]) => void;
type Bindings = Record<string, unknown>;
interface PinoLike {
  level: string;
  levels: { values: Record<string, number> };
  child(bindings: Bindings, options?: Bindings): PinoLike;
  isLevelEnabled(level: string): boolean;
}

/**
 * A request's logger, made on first use. Fastify makes a child logger (request id bound, redaction applied) for every
 * request, although at the usual production level (warn) most requests never write a line: a measurable share of a
 * cached session check. A call below the level never makes the child; any other call gets the same line, with the
 * same bindings, as from the child Fastify would have made.
 */
class LazyChildLogger {
  #real: PinoLike | null = null;
  readonly #parent: PinoLike;
  readonly #bindings: Bindings;
  readonly #options: Bindings;
  constructor(parent: PinoLike, bindings: Bindings, options: Bindings) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }
  #child(): PinoLike {
    this.#real ??= this.#parent.child(this.#bindings, this.#options);
    return this.#real;
  }
  #log(level: Level, args: unknown[]) {
    if (this.#real || this.isLevelEnabled(level)) (this.#child() as unknown as Record<Level, LogFn>)[level](...args);
  }
  get level(): string {
    return this.#real?.level ?? (this.#options.level as string | undefined) ?? this.#parent.level;
  }
  set level(value: string) {
    this.#child().level = value;
  }
  get levels() {
    return this.#parent.levels;
  }
  isLevelEnabled(level: string): boolean {
    if (this.#real) return this.#real.isLevelEnabled(level);
    const values = this.#parent.levels.values;
    return (values[level] ?? Number.POSITIVE_INFINITY) >= (values[this.level] ?? 0);
  }
  fatal(...args: unknown[]) {
    this.#log('fatal', args);
  }
  error(...args: unknown[]) {
    this.#log('error', args);
  }
  warn(...args: unknown[]) {
    this.#log('warn', args);
  }
  info(...args: unknown[]) {
    this.#log('info', args);
  }
  debug(...args: unknown[]) {
    this.#log('debug', args);
  }
  trace(...args: unknown[]) {
    this.#log('trace', args);
  }
  silent() {}
  child(bindings: Bindings, options?: Bindings): PinoLike {
    return this.#child().child(bindings, options);
  }
  bindings(): Bindings {
    return (this.#child() as unknown as { bindings(): Bindings }).bindings();
  }
}

/** Fastify's childLoggerFactory: the request logger, made lazily (see LazyChildLogger). */
export const lazyChildLogger: NonNullable<FastifyServerOptions['childLoggerFactory']> = (logger, bindings, options) =>
  // A logger that is not pino (logger: false gives Fastify's no-op one) has no levels to check: its own child.
  'levels' in logger
    ? (new LazyChildLogger(
        logger as unknown as PinoLike,
        bindings,
        options as Bindings,
      ) as unknown as FastifyBaseLogger)
    : logger.child(bindings, options);
