import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply } from 'fastify';

/**
 * Node sets `upgrade` on a request it handed to the server's 'upgrade' listeners: the socket is detached from the HTTP
 * parser then, and nothing of Node's closes it after an answer (its keep-alive handling, timeouts and even the
 * client's FIN go unnoticed: nobody reads the socket any more). Requests made with `inject` have no such flag.
 */
const isDetached = (raw: IncomingMessage) => (raw as IncomingMessage & { upgrade?: boolean }).upgrade === true;

/**
 * Once the answer has been handed to the socket: end it, then destroy it, since the client's FIN that would complete
 * a half-close is never read.
 */
function close(socket: Socket): void {
  if (!socket.destroyed) socket.end(() => socket.destroy());
}

/**
 * @fastify/websocket (in the /ws/chat plugin) takes every upgrade request the server sees and routes it through
 * Fastify, but closes the socket afterwards only for its own route, and only once its own hook has seen the request:
 * an upgrade request to any other path (200, 404, 401), or to /ws/chat refused by a root hook (https_only), was
 * answered over HTTP and its socket left open for good, holding app.close() (SIGTERM) open with it. So every such
 * request is answered with `Connection: close` (the server would otherwise announce a keep-alive it cannot keep) and
 * its socket closed once the answer is out ('finish'). An upgraded socket is never answered this way: its reply is
 * hijacked, and its response never finishes.
 *
 * Called for every request (the gateway's first onRequest hook, where it costs one property read: no hook of its own
 * on the hot path), and by Fastify's frameworkErrors, which answers before any hook runs (a malformed URL).
 */
export function closeDetachedAfter(reply: FastifyReply): void {
  if (!isDetached(reply.request.raw)) return;
  reply.header('connection', 'close');
  reply.raw.once('finish', () => close(reply.request.raw.socket));
}
