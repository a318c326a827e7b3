import fastifyWebsocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext, Authenticator } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import { AppError } from '../../errors/index.js';
import { LIMIT_KEYS, limitOf, type UsageLimits } from '../chat/usage-limits.js';
import type { AuthStamp, ChatSockets } from './chat-sockets.js';

export interface WsChatOptions {
  config: Config['websocket'];
  authenticator: Authenticator;
  limits: UsageLimits;
  /** The sockets' state machine (createChatSockets), owned by the caller so it can be observed. */
  sockets: ChatSockets;
}

const upgradeAuth = new WeakMap<FastifyRequest, { auth: AuthContext; began: AuthStamp }>();

/**
 * GET /ws/chat. A bearer token on the upgrade request is checked before upgrading (an invalid one gets HTTP 401, a
 * user at the connection limit 429); without one, the first frame must be {"type":"auth","token"}. Protocol and close
 * codes: protocol.ts and README.md ("WebSocket chat"). Encapsulated: @fastify/websocket serves only this route.
 */
export async function wsChatPlugin(app: FastifyInstance, opts: WsChatOptions): Promise<void> {
  const { config, authenticator, limits, sockets } = opts;

  await app.register(fastifyWebsocket, {
    // permessage-deflate costs tens of KB per socket (zlib contexts) and opens compression side channels.
    options: { maxPayload: config.max_frame_bytes, perMessageDeflate: false, clientTracking: false },
    // Protocol violations (oversized frame, bad UTF-8) are answered by ws with a close frame already.
    errorHandler(error, socket, request) {
      request.log.debug({ err: { message: error.message } }, 'websocket protocol error');
      socket.terminate();
    },
    // ws's server is left open (it would refuse a late upgrade with a bare 503): an upgrade still being authenticated
    // now is closed by accept() with 1001, as the sockets open now are; new requests get Fastify's 503 from here on.
    preClose(done) {
      sockets.close();
      done();
    },
  });

  app.get(
    '/ws/chat',
    {
      websocket: true,
      schema: {
        summary: 'Chat over WebSocket (see README: WebSocket chat)',
        tags: ['channels'],
        headers: { type: 'object', properties: { authorization: { type: 'string', maxLength: 8192 } } },
      },
      // A plain HTTP request (no Upgrade header) is not a socket: 426 with the usual JSON error, before any token is
      // looked at, instead of @fastify/websocket's empty 404.
      async onRequest(request, reply) {
        if (request.ws) return;
        reply.header('upgrade', 'websocket');
        throw new AppError('UPGRADE_REQUIRED');
      },
      async preValidation(request) {
        if (request.headers.authorization === undefined) return;
        const began = sockets.stamp();
        const auth = await authenticator.authenticateWebSocket(request);
        if (!auth) throw new AppError('INVALID_TOKEN');
        if (auth.license.features.chat === false) throw new AppError('FORBIDDEN');
        const max = limitOf(auth.license, LIMIT_KEYS.connections);
        if (max !== null && limits.connections(auth.userId) >= max) throw new AppError('CONNECTION_LIMIT');
        upgradeAuth.set(request, { auth, began });
      },
      // An authenticated upgrade answers with the 101 response and, at once, the auth_ok frame: both are written in
      // the same synchronous run (the upgrade, then the handler), so a corked socket sends them as one write, one
      // packet and one wake-up of the client instead of two. Uncorked in the next tick whatever happened meanwhile
      // (a refused upgrade's end() uncorks by itself).
      preHandler(request, _reply, done) {
        const socket = request.raw.socket;
        if (upgradeAuth.has(request) && socket) {
          socket.cork();
          process.nextTick(() => {
            while (socket.writableCorked > 0) socket.uncork();
          });
        }
        done();
      },
    },
    (socket, request) => {
      const upgraded = upgradeAuth.get(request);
      sockets.accept(socket, upgraded?.auth ?? null, request.ip, upgraded?.began);
      upgradeAuth.delete(request);
    },
  );
}
