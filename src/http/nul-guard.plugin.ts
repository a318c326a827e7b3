import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors/index.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route takes text with NUL characters (it stores none of it): the NUL guard lets it through. */
    allowNul?: boolean;
  }
}

/** The first place (path, query or body key or value) where a NUL character hides, as a field name; null if none. */
export function nulField(value: unknown, path: string, depth = 0): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (!value || typeof value !== 'object' || depth > 64 || Buffer.isBuffer(value)) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nulField(value[i], `${path}[${i}]`, depth + 1);
      if (found) return found;
    }
    return null;
  }
  for (const [key, inner] of Object.entries(value)) {
    const name = path ? `${path}.${key}` : key;
    if (key.includes('\u0000')) return name;
    const found = nulField(inner, name, depth + 1);
    if (found) return found;
  }
  return null;
}

/**
 * PostgreSQL text cannot hold a NUL character: a value carrying one would fail the query it reaches with a server
 * error. Every path parameter, query value and parsed JSON body is checked once, before schema validation, and such a
 * request is refused with 400 VALIDATION_FAILED naming the field. (Raw bodies forwarded to Better Auth are checked by
 * its mount.) A route that stores none of its text opts out with `config: { allowNul: true }`: the Telegram webhook,
 * which Telegram would otherwise retry forever for a name with a NUL in it.
 */
export const nulGuardPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('preValidation', (request, _reply, done) => {
      // Path parameters and query values come from the URL, where a NUL can only arrive percent-encoded (the HTTP
      // parser refuses a raw one): without "%00" in it there is nothing to look for there. Most requests (a bearer
      // check) have neither that nor a body, and pass without walking anything.
      const inUrl = request.url.includes('%00');
      if ((!inUrl && request.body === undefined) || request.routeOptions.config?.allowNul === true) return done();
      const field =
        (inUrl ? (nulField(request.params, '') ?? nulField(request.query, '')) : null) ?? nulField(request.body, '');
      done(field ? new AppError('VALIDATION_FAILED', 'Text may not contain NUL characters.', { field }) : undefined);
    });
  },
  { name: 'nul-guard' },
);
