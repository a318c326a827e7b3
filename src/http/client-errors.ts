import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyBaseLogger, FastifyInstance } from 'fastify';
import { ERROR_CATALOGUE, type ErrorCode } from '../errors/index.js';
import { errorBody } from './errors.plugin.js';
import { genReqId } from './logging.js';

/** Node's errors for a request it could not read, by the answer they get (the statuses Node's own answers use). */
const CODES: Record<string, ErrorCode> = {
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'BODY_TOO_LARGE',
  // A request that did not arrive within Node's headersTimeout / requestTimeout.
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
};
/** Every other parse error (a malformed request line, header or chunk) is the client's malformed request. */
const MALFORMED: ErrorCode = 'BAD_REQUEST';
interface Answer {
  code: ErrorCode;
  status: number;
  /** The whole response, status line to body. */
  text: string;
}

/**
 * Fastify's clientErrorHandler: the answer to a request Node could not parse (a malformed header or chunk, headers
 * over the size limit) or that did not arrive in time (408). No request, route or hook exists for it, so the answer is
 * written on the socket by hand, like every other error's: the JSON error envelope, the security headers and
 * `Connection: close`; then the socket is closed, as Node's own answer does. Only the error's code is logged: the error
 * carries the raw bytes read so far (`rawPacket`: an Authorization header, a password in a body), which Fastify's
 * default handler logs whole at trace level.
 */
export function createClientErrorHandler(
  securityHeaders: Record<string, string>,
): (this: FastifyInstance, err: ConnectionError, socket: Socket) => void {
  const fixed = Object.entries(securityHeaders)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const head = (status: number) => `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${fixed}connection: close\r\n`;
  const envelope = (code: ErrorCode): Answer => {
    const { status } = ERROR_CATALOGUE[code];
    const body = JSON.stringify(errorBody(code));
    const type = 'content-type: application/json; charset=utf-8\r\n';
    return { code, status, text: `${head(status)}${type}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}` };
  };
  // Built once: no answer depends on the request.
  const answers = new Map(Object.entries(CODES).map(([nodeCode, code]) => [nodeCode, envelope(code)]));
  const malformed = envelope(MALFORMED);

  return function clientError(this: FastifyInstance, err: ConnectionError, socket: Socket): void {
    // A reset connection is gone: nothing to answer, and nothing the operator can act on.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const { code, status, text } = answers.get(err.code) ?? malformed;
    // `code` stays a top-level field (`*.code` is redacted); `reason` is Node's code, never the error itself.
    this.log.info({ code, status, reason: err.code }, 'client error');
    // As Node's own answer: only when no answer to an earlier request on this connection has begun, which this one
    // would corrupt.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) socket.write(text);
    socket.destroy();
  };
}

/**
 * The http server's 'checkExpectation' listener: the answer to a request whose Expect header is not 100-continue
 * (Node answers that one itself, and with this listener it still does). Without a listener Node answers a bare 417;
 * the request never reaches Fastify, so the answer is written here like every other error's: the JSON envelope with a
 * stable code, the security headers, the request id and `Connection: close` (the body, if any, is never read).
 */
export function createExpectationHandler(
  securityHeaders: Record<string, string>,
  log: FastifyBaseLogger,
): (req: IncomingMessage, res: ServerResponse) => void {
  const code: ErrorCode = 'EXPECTATION_FAILED';
  const { status } = ERROR_CATALOGUE[code];
  const body = JSON.stringify(errorBody(code));
  return function expectationFailed(req: IncomingMessage, res: ServerResponse): void {
    const reqId = genReqId(req);
    // The Expect value is the client's text: not logged.
    log.info({ reqId, code, status }, 'client error');
    res.writeHead(status, {
      ...securityHeaders,
      'x-request-id': reqId,
      connection: 'close',
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  };
}
