import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isUnavailableError } from '../db/index.js';
import { AppError, ERROR_CATALOGUE, type ErrorCode } from '../errors/index.js';

/** Fastify's own error codes mapped onto ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_MALFORMED_JSON_BODY: 'MALFORMED_JSON',
};

/** Other 4xx errors raised by Fastify or its plugins (static files, router limits), by status. */
const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  413: 'BODY_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
};

export interface ErrorBody {
  success: false;
  error: { code: ErrorCode; message: string; field?: string };
}

export function errorBody(code: ErrorCode, message?: string, field?: string): ErrorBody {
  return {
    success: false,
    error: { code, message: message ?? ERROR_CATALOGUE[code].message, ...(field ? { field } : {}) },
  };
}

/**
 * One renderer for every error: `{"success":false,"error":{"code","message"}}` with a stable code. 5xx bodies say
 * nothing about internals; the log line (with the request id) says everything.
 */
export const errorsPlugin = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err: FastifyError | AppError | Error, request: FastifyRequest, reply: FastifyReply) => {
      const { status, body } = render(err);
      // A 503 of ours (a full hash queue, a feature switched off) is load being shed, not a fault: one warning line
      // with its code, not an error with a stack trace for every request of a flood. (The code must be a top-level
      // field: `err.code` is redacted with every other `*.code`.)
      if (status === 503 && err instanceof AppError)
        request.log.warn({ code: body.error.code, status }, 'request shed');
      else if (status >= 500) request.log.error({ err }, 'request failed');
      else request.log.info({ code: body.error.code, status }, 'request refused');
      if (err instanceof AppError && err.details.retryAfter !== undefined) {
        reply.header('retry-after', String(err.details.retryAfter));
      }
      if (status === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', '5');
      return reply.status(status).type('application/json; charset=utf-8').send(body);
    });

    app.setNotFoundHandler((request, reply) => {
      // The path is echoed for the developer's benefit, but never a long (possibly hostile) one.
      const path = request.url.split('?')[0] ?? '';
      const shown = path.length > 100 ? `${path.slice(0, 100)}…` : path;
      return reply.status(404).send(errorBody('NOT_FOUND', `No route ${request.method} ${shown}.`));
    });
  },
  { name: 'errors' },
);

/** The status and body every error is answered with (also used for errors raised before routing). */
export function render(err: FastifyError | AppError | Error): { status: number; body: ErrorBody } {
  if (err instanceof AppError) {
    return { status: err.status, body: errorBody(err.code, err.message, err.details.field) };
  }
  const fe = err as FastifyError;
  if (fe.validation) {
    const first = fe.validation[0];
    const params = (first?.params ?? {}) as { missingProperty?: string; additionalProperty?: string };
    const path = (first?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
    const field = params.missingProperty ?? (path || params.additionalProperty);
    const where = fe.validationContext && fe.validationContext !== 'body' ? `${fe.validationContext} ` : '';
    const message = field
      ? `${where}${field} ${first?.message ?? 'is invalid'}`
      : `${where}${first?.message ?? 'is invalid'}`;
    return { status: 400, body: errorBody('VALIDATION_FAILED', message, field || undefined) };
  }
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return { status: ERROR_CATALOGUE[mapped].status, body: errorBody(mapped) };
  if (err instanceof SyntaxError) return { status: 400, body: errorBody('MALFORMED_JSON') };
  if (isUnavailableError(err)) return { status: 503, body: errorBody('DATABASE_UNAVAILABLE') };
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    return { status, body: errorBody(STATUS_CODES[status] ?? 'BAD_REQUEST') };
  }
  return { status: 500, body: errorBody('INTERNAL_ERROR') };
}
