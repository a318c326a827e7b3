import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestApp,
  createTestDatabase,
  registerUser,
  type TestApp,
  type TestDatabase,
} from '../helpers/test-app.js';
import { connect, listen } from '../helpers/ws-client.js';

interface RawAnswer {
  /** The status line and headers the server sent (lower-cased header names). */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Whether the server closed the connection itself (its FIN arrived) while the client kept its side open. */
  closedByServer: boolean;
}

/**
 * A WebSocket upgrade request over a raw TCP socket, as any client or scanner can send one: the client reads the
 * answer and does not close its side, so only the server can end the connection.
 */
function rawUpgrade(port: number, path: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let received = '';
    const finish = (closedByServer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const [head = '', body = ''] = received.split('\r\n\r\n', 2);
      const [statusLine = '', ...lines] = head.split('\r\n');
      const parsed: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        parsed[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers: parsed, body, closedByServer });
    };
    // Long enough for any answer on a loaded test machine; the defect kept the socket open for good.
    const timer = setTimeout(() => finish(false), 3000);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    socket.on('end', () => finish(true));
    socket.on('error', reject);
    const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra.join('')}\r\n`,
    );
  });
}

const portOf = (url: string) => Number(new URL(url).port);

async function openConnections(t: TestApp): Promise<number> {
  return new Promise((resolve, reject) =>
    t.app.server.getConnections((err, count) => (err ? reject(err) : resolve(count))),
  );
}

// Regression: @fastify/websocket takes every upgrade request the server sees but closes the socket only for its own
// route, so an upgrade request answered over HTTP anywhere else (200, 404, 401, a root hook's 403) kept its socket
// open for good, and app.close() (SIGTERM) waited on it forever.
describe('an Upgrade request answered over HTTP', () => {
  let shared: TestDatabase;
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    shared = await createTestDatabase();
    t = await createTestApp({ shared });
    port = portOf(await listen(t.app));
  });
  afterAll(async () => {
    await t?.close();
    await shared?.drop();
  });

  it('is answered with Connection: close and its socket closed, whatever the path and status', async () => {
    const cases: Array<[string, Record<string, string>, number]> = [
      ['/auth/health', {}, 200],
      ['/no/such/route', {}, 404],
      ['/auth/session', {}, 401],
      ['/auth/sessions/%E0%A4%A', {}, 400], // refused by the router before any route (frameworkErrors)
      ['/ws/chat', { authorization: 'Bearer not.a.token' }, 401],
    ];
    const answers = await Promise.all(cases.map(([path, headers]) => rawUpgrade(port, path, headers)));
    for (const [i, answer] of answers.entries()) {
      const [path, , status] = cases[i] as (typeof cases)[number];
      expect(answer.status, path).toBe(status);
      expect(answer.headers.connection, path).toBe('close');
      expect(answer.closedByServer, path).toBe(true);
    }
    expect(JSON.parse(answers[2]?.body ?? '')).toMatchObject({ success: false, error: { code: 'AUTH_REQUIRED' } });
    await expect.poll(() => openConnections(t)).toBe(0);
  });

  it('leaves a real WebSocket upgrade to /ws/chat open', async () => {
    const { token } = await registerUser(t.app);
    const c = await connect(`ws://127.0.0.1:${port}/ws/chat`);
    c.send({ type: 'auth', token });
    expect((await c.next()).type).toBe('auth_ok');
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close(1000);
    expect((await c.closed).code).toBe(1000);
  });

  it('refused by a root hook (server.https_only) on /ws/chat is closed too, and app.close() does not wait on it', async () => {
    const strict = await createTestApp({ shared, config: { server: { https_only: true } } });
    try {
      const strictPort = portOf(await listen(strict.app));
      const answer = await rawUpgrade(strictPort, '/ws/chat');
      expect(answer.status).toBe(403);
      expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'HTTPS_REQUIRED' } });
      expect(answer.closedByServer).toBe(true);
    } finally {
      // Before the fix this never resolved: the server waited for a socket nobody would close.
      await Promise.race([
        strict.app.close(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('app.close() hung')), 5000)),
      ]);
    }
  });
});
