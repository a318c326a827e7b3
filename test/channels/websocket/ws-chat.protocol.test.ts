import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../../src/app.js';
import { createTestApp, registerUser, type TestApp, testConfig } from '../../helpers/test-app.js';
import { connect, listen, type WsClient } from '../../helpers/ws-client.js';

describe('/ws/chat: the protocol after auth_ok', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await createTestApp({
      config: {
        websocket: { max_frame_bytes: 1024, heartbeat_interval: 5 },
        licenses: { types: { free: { features: { chat: true }, resource_limits: {} } } },
      },
    });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  const signedIn = async (): Promise<WsClient> => {
    const { token } = await registerUser(t.app);
    const c = await connect(url, { authorization: `Bearer ${token}` });
    expect((await c.next()).type).toBe('auth_ok');
    return c;
  };

  it('echoes a message with its id, then reply_end', async () => {
    const c = await signedIn();
    c.send({ type: 'message', id: 'm-1', text: 'hello there' });
    expect(await c.next()).toEqual({ type: 'reply', id: 'm-1', text: 'hello there' });
    expect(await c.next()).toEqual({ type: 'reply_end', id: 'm-1' });
    c.ws.close();
  });

  it('answers ping with pong', async () => {
    const c = await signedIn();
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  it('answers malformed, unknown, invalid and binary frames with an error frame and stays open', async () => {
    const c = await signedIn();
    const cases: Array<[unknown, object]> = [
      ['{"type":', { type: 'error', code: 'MALFORMED_JSON' }],
      ['"just a string"', { type: 'error', code: 'MALFORMED_JSON' }],
      [{ kind: 'message' }, { type: 'error', code: 'MALFORMED_JSON' }],
      [{ type: 'shout' }, { type: 'error', code: 'UNKNOWN_TYPE' }],
      [
        { type: 'message', text: 'no id' },
        { type: 'error', code: 'INVALID_MESSAGE' },
      ],
      [
        { type: 'message', id: 'x'.repeat(129), text: 'long id' },
        { type: 'error', code: 'INVALID_MESSAGE' },
      ],
      [
        { type: 'message', id: 'a', text: '   ' },
        { type: 'error', code: 'INVALID_MESSAGE', id: 'a' },
      ],
      [
        { type: 'message', id: 'b', text: 7 },
        { type: 'error', code: 'INVALID_MESSAGE', id: 'b' },
      ],
      [
        { type: 'auth', token: 'again' },
        { type: 'error', code: 'ALREADY_AUTHENTICATED' },
      ],
    ];
    for (const [frame, expected] of cases) {
      c.send(frame);
      expect(await c.next()).toEqual(expected);
    }
    c.ws.send(Buffer.from('{"type":"ping"}'));
    expect(await c.next()).toEqual({ type: 'error', code: 'BINARY_NOT_SUPPORTED' });
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  it('closes with 1009 on a frame over websocket.max_frame_bytes, and the server keeps serving', async () => {
    const c = await signedIn();
    c.send({ type: 'message', id: 'big', text: 'x'.repeat(2000) });
    expect((await c.closed).code).toBe(1009);
    const d = await signedIn();
    d.send({ type: 'ping' });
    expect(await d.next()).toEqual({ type: 'pong' });
    d.ws.close();
  });

  it('refuses an oversized frame before authentication too', async () => {
    const c = await connect(url);
    c.send({ type: 'auth', token: 'x'.repeat(5000) });
    expect((await c.closed).code).toBe(1009);
  });

  // Regression: every frame got its answer whatever the peer had left unread, so a client that sent without reading
  // grew the server's buffer without bound (400,000 empty frames: 12.5 MB buffered and growing).
  it('drops a socket that sends without reading once about 1 MiB of answers waits for it', async () => {
    // A second gateway on the same database whose heartbeat cannot drop the silent client first.
    const other = await buildApp({
      config: testConfig(t.testDb.dataDir, { websocket: { heartbeat_interval: 120 } }),
      db: t.db,
      logger: false,
    });
    try {
      const { token } = await registerUser(other);
      const c = await connect(`${await listen(other)}/ws/chat`, { authorization: `Bearer ${token}` });
      expect((await c.next()).type).toBe('auth_ok');
      c.ws.on('error', () => {}); // its sends fail once it is dropped
      c.ws.pause();
      // Each empty frame (6 bytes) is answered with a MALFORMED_JSON error (43 bytes); the kernel's buffers on both
      // ends take a few MB first. 600,000 of them: 26 MB of answers, far past the bound.
      let sent = 0;
      while (other.chatSockets.size > 0 && sent < 600_000) {
        for (let i = 0; i < 10_000; i++) c.ws.send('');
        sent += 10_000;
        await new Promise((r) => setTimeout(r, 5));
      }
      await expect.poll(() => other.chatSockets.size, { timeout: 2000 }).toBe(0);
      c.ws.terminate();
    } finally {
      await other.close();
    }
  });

  it('closes every socket with 1001 when the gateway shuts down', async () => {
    // A second gateway on the same database (no new database: cheap), closed while sockets are open.
    const other = await buildApp({ config: testConfig(t.testDb.dataDir), db: t.db, logger: false });
    const otherUrl = `${await listen(other)}/ws/chat`;
    const { token } = await registerUser(other);
    const c = await connect(otherUrl, { authorization: `Bearer ${token}` });
    await c.next();
    const pending = await connect(otherUrl); // not yet authenticated
    await other.close();
    expect((await c.closed).code).toBe(1001);
    expect((await pending.closed).code).toBe(1001);
  });

  // Regression: an upgrade whose bearer check was under way at shutdown opened after the 1001 sweep and stayed open,
  // so close() waited on it (SIGTERM: until server.shutdown_timeout, then exit 1).
  it('closes with 1001 an upgrade still being authenticated when the gateway shuts down, and close() does not wait', async () => {
    const other = await buildApp({ config: testConfig(t.testDb.dataDir), db: t.db, logger: false });
    const otherUrl = `${await listen(other)}/ws/chat`;
    const { token } = await registerUser(other);
    const check = other.authenticator.authenticateWebSocket.bind(other.authenticator);
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let checking = false;
    vi.spyOn(other.authenticator, 'authenticateWebSocket').mockImplementation(async (request) => {
      checking = true;
      await held;
      return check(request);
    });
    const opening = connect(otherUrl, { authorization: `Bearer ${token}` }).catch((err: Error) => err);
    await expect.poll(() => checking).toBe(true);

    // The check completes only once the shutdown has closed the sockets open at that moment.
    const sweep = vi.spyOn(other.chatSockets, 'close');
    const closing = other.close();
    await expect.poll(() => sweep.mock.calls.length).toBe(1);
    release();
    const client = await opening;
    if (client instanceof Error) throw client;
    const closed = await Promise.race([client.closed, new Promise((r) => setTimeout(() => r('still open'), 3000))]);
    expect(closed).toEqual({ code: 1001, reason: 'SERVER_SHUTDOWN' });
    expect(other.chatSockets.size).toBe(0);
    await Promise.race([
      closing,
      new Promise((_, reject) => setTimeout(() => reject(new Error('app.close() waited on the socket')), 3000)),
    ]);
    client.ws.terminate();
  });
});

describe('/ws/chat: heartbeats', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await createTestApp({ config: { websocket: { heartbeat_interval: 0.1 } } });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  it('drops a socket that stops answering pings', async () => {
    const { token } = await registerUser(t.app);
    const c = await new Promise<WsClient>((resolve, reject) => {
      // A client whose pongs never come: ws answers pings itself unless autoPong is off.
      import('ws').then(({ default: WebSocket }) => {
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, autoPong: false });
        const closed = new Promise<{ code: number; reason: string }>((res) =>
          ws.on('close', (code, reason) => res({ code, reason: reason.toString() })),
        );
        ws.on('error', reject);
        ws.on('open', () => resolve({ ws, closed, next: async () => ({ type: '' }), send: () => {} }));
      });
    });
    const { code } = await c.closed;
    expect(code).toBe(1006); // terminated: no close frame
    const userId = await userOf(token);
    await vi.waitFor(() => expect(t.app.usageLimits.connections(userId)).toBe(0));
    expect(t.app.chatSockets.size).toBe(0);
  });

  it('keeps a socket that answers pings open across many intervals', async () => {
    const { token } = await registerUser(t.app);
    const c = await connect(url, { authorization: `Bearer ${token}` });
    await c.next();
    let pings = 0;
    c.ws.on('ping', () => {
      pings++;
    });
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (pings >= 5) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  async function userOf(token: string): Promise<string> {
    const res = await t.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${token}` },
    });
    return (res.json() as { user: { id: string } }).user.id;
  }
});
