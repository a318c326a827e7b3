import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors/index.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route takes text with NUL characters (it stores none of it): the NUL guard lets it through. */
    allowNul?: boolean;
  }
}

/**
 * How many levels of objects and arrays the guard walks: far more than any body a route takes (a license's features,
 * a WebAuthn response), few enough for the recursion. A body nested deeper is refused, not passed unchecked: a NUL
 * hidden below the bound reached PostgreSQL and failed the query with a server error.
 */
const MAX_DEPTH = 64;

/**
 * A UTF-16 surrogate that is not half of a pair. With the `u` flag a pair reads as one code point, which is not in the
 * Surrogate category, so only a lone one matches. (`String.prototype.isWellFormed` says the same, but the ES2023 lib
 * this project compiles against does not declare it.)
 */
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Why a request's text cannot be taken (a NUL character or a lone surrogate in a path, query or body key or value, a
 * number JSON.parse read as Infinity, or a body nested deeper than the guard walks), naming the field; null when it can.
 */
export function refusedText(value: unknown, path: string, depth = 0): AppError | null {
  if (typeof value === 'string') return refusedString(value, path);
  // JSON has no Infinity: 1e999 overflows to it when parsed, and JSON.stringify would store it as null.
  if (typeof value === 'number' && !Number.isFinite(value)) {
    return new AppError('VALIDATION_FAILED', 'A number is too large to store.', { field: path });
  }
  if (!value || typeof value !== 'object' || Buffer.isBuffer(value)) return null;
  if (depth >= MAX_DEPTH) {
    return new AppError(
      'VALIDATION_FAILED',
      `The body may not nest objects or arrays more than ${MAX_DEPTH} levels deep.`,
      {
        field: path,
      },
    );
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = refusedText(value[i], `${path}[${i}]`, depth + 1);
      if (found) return found;
    }
    return null;
  }
  for (const [key, inner] of Object.entries(value)) {
    const name = path ? `${path}.${key}` : key;
    const found = refusedString(key, name) ?? refusedText(inner, name, depth + 1);
    if (found) return found;
  }
  return null;
}

function refusedString(text: string, field: string): AppError | null {
  if (text.includes('\u0000')) return invalidText('Text may not contain NUL characters.', field);
  if (LONE_SURROGATE.test(text)) return invalidText('Text may not contain unpaired UTF-16 surrogates.', field);
  return null;
}

const invalidText = (message: string, field: string) => new AppError('VALIDATION_FAILED', message, { field });

/**
 * PostgreSQL text cannot hold a NUL character, nor jsonb a lone UTF-16 surrogate (JSON.stringify writes one as
 * "\ud800", which PostgreSQL refuses as invalid JSON): a value carrying either would fail the query it reaches with a
 * server error. Every path parameter, query value and parsed JSON body is checked once, before schema validation, and
 * such a request is refused with 400 VALIDATION_FAILED naming the field; so is a body nested deeper than the check walks,
 * and one with a number too large for a double (1e999 parses as Infinity, which jsonb would store as null).
 * (Raw bodies forwarded to Better Auth are checked for NUL by its mount; a lone surrogate there only reaches text
 * columns, where the driver's UTF-8 encoding stores it as U+FFFD.) A route that stores none of its text opts out with
 * `config: { allowNul: true }`: the Telegram webhook, which Telegram would otherwise retry forever for a name with a NUL
 * in it.
 */
export const nulGuardPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('preValidation', (request, _reply, done) => {
      // Path parameters and query values come from the URL, where a NUL can only arrive percent-encoded (the HTTP
      // parser refuses a raw one): without "%00" in it there is nothing to look for there. Most requests (a bearer
      // check) have neither that nor a body, and pass without walking anything. A lone surrogate cannot come from the
      // URL at all: percent-decoding refuses the invalid UTF-8 that would encode one and leaves the text as it was.
      const inUrl = request.url.includes('%00');
      if ((!inUrl && request.body === undefined) || request.routeOptions.config?.allowNul === true) return done();
      const refused =
        (inUrl ? (refusedText(request.params, '') ?? refusedText(request.query, '')) : null) ??
        refusedText(request.body, '');
      done(refused ?? undefined);
    });
  },
  { name: 'nul-guard' },
);
