import fastifyWebsocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext, Authenticator, SessionEvents } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import { AppError } from '../../errors/index.js';
import type { ChatService } from '../chat/chat-service.js';
import { LIMIT_KEYS, limitOf, type UsageLimits } from '../chat/usage-limits.js';
import { createChatSockets } from './chat-sockets.js';
import { CloseCode } from './protocol.js';

export interface WsChatOptions {
  config: Config['websocket'];
  authenticator: Authenticator;
  sessionEvents: SessionEvents;
  sessionExpiry(sessionId: string): Promise<Date | null>;
  limits: UsageLimits;
  chat: ChatService;
}

const upgradeAuth = new WeakMap<FastifyRequest, AuthContext>();

/**
 * GET /ws/chat. A bearer token on the upgrade request is checked before upgrading (an invalid one gets HTTP 401, a
 * user at the connection limit 429); without one, the first frame must be {"type":"auth","token"}. Protocol and close
 * codes: protocol.ts and README.md ("WebSocket chat"). Encapsulated: @fastify/websocket serves only this route.
 */
export async function wsChatPlugin(app: FastifyInstance, opts: WsChatOptions): Promise<void> {
  const { config, authenticator, limits } = opts;
  const sockets = createChatSockets({
    authenticator,
    sessionEvents: opts.sessionEvents,
    sessionExpiry: opts.sessionExpiry,
    limits,
    chat: opts.chat,
    authTimeout: config.auth_timeout,
    heartbeatInterval: config.heartbeat_interval,
    maxUnauthenticated: config.max_unauthenticated,
    log: app.log,
  });

  await app.register(fastifyWebsocket, {
    // permessage-deflate costs tens of KB per socket (zlib contexts) and opens compression side channels.
    options: { maxPayload: config.max_frame_bytes, perMessageDeflate: false, clientTracking: false },
    // Protocol violations (oversized frame, bad UTF-8) are answered by ws with a close frame already.
    errorHandler(error, socket, request) {
      request.log.debug({ err: { message: error.message } }, 'websocket protocol error');
      socket.terminate();
    },
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
      async preValidation(request) {
        if (request.headers.authorization === undefined) return;
        const auth = await authenticator.authenticateWebSocket(request);
        if (!auth) throw new AppError('INVALID_TOKEN');
        if (auth.license.features.chat === false) throw new AppError('FORBIDDEN');
        const max = limitOf(auth.license, LIMIT_KEYS.connections);
        if (max !== null && limits.connections(auth.userId) >= max) throw new AppError('CONNECTION_LIMIT');
        upgradeAuth.set(request, auth);
      },
    },
    (socket, request) => {
      sockets.accept(socket, upgradeAuth.get(request) ?? null);
      upgradeAuth.delete(request);
    },
  );

  app.decorate('chatSockets', sockets);
}

declare module 'fastify' {
  interface FastifyInstance {
    chatSockets: ReturnType<typeof createChatSockets>;
  }
}

export { CloseCode };
