import fastifyJwt from '@fastify/jwt';
import fastifyWebsocket from '@fastify/websocket';
import Fastify from 'fastify';

/**
 * The baselines, as their own process: a bare Fastify JSON route (GET /bare) and a bare @fastify/websocket +
 * @fastify/jwt endpoint (/ws: verify the bearer on upgrade, send auth_ok) on the same Node and Fastify.
 */
const { port, secret } = JSON.parse(process.argv[2] ?? '{}') as { port: number; secret: string };

const app = Fastify({ logger: false });
await app.register(fastifyJwt, { secret, sign: { algorithm: 'HS256' }, verify: { algorithms: ['HS256'] } });
await app.register(fastifyWebsocket, { options: { perMessageDeflate: false } });

app.get('/bare', async () => ({ success: true, user: { id: 'user_1', email: 'a@example.com', name: 'A' } }));
app.get('/health', async () => ({ ok: true }));

app.register(async (scope) => {
  scope.get(
    '/ws',
    {
      websocket: true,
      preValidation: async (request, reply) => {
        try {
          await request.jwtVerify();
        } catch {
          return reply.status(401).send({ success: false });
        }
      },
    },
    (socket, request) => {
      const { sub } = request.user as { sub: string };
      socket.send(JSON.stringify({ type: 'auth_ok', userId: sub }));
    },
  );
});

await app.listen({ port, host: '127.0.0.1' });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
