import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';

/**
 * Everything that might carry a credential is redacted before a line is written: headers, any body field with a
 * secret's name, and query strings (reset and verification links carry tokens there).
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
];

const REQUEST_ID = /^[\w.-]{1,64}$/;

export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req(req: { method: string; url: string; ip?: string; id?: string }) {
        return { method: req.method, url: stripQuery(req.url), ip: req.ip };
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
