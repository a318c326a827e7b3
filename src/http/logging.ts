import { randomUUID } from 'node:crypto';
import type { FastifyServerOptions } from 'fastify';

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
