import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityHeaders } from '../../../src/channels/chat/chat-service.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';
import { connect, type Frame, listen } from '../../helpers/ws-client.js';

/** An AI backend stand-in: streams the reply in three chunks with pauses; "fail" gets a 500. */
function startUpstream(): Promise<{
  server: Server;
  url: string;
  seen: Array<{ headers: IncomingHttpHeaders; body: unknown }>;
}> {
  const seen: Array<{ headers: IncomingHttpHeaders; body: unknown }> = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => {
      raw += c.toString();
    });
    req.on('end', async () => {
      const body = JSON.parse(raw) as { id: string; text: string };
      seen.push({ headers: req.headers, body });
      if (body.text === 'fail') {
        res.writeHead(500).end('boom');
        return;
      }
      if (body.text.startsWith('redirect ')) {
        res.writeHead(307, { location: body.text.slice('redirect '.length) }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      for (const part of ['You said: ', body.text, ' ✓']) {
        res.write(part);
        await new Promise((r) => setTimeout(r, 30));
      }
      res.end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/chat`, seen }),
    ),
  );
}

describe('HTTP-forwarding ChatService', () => {
  let t: TestApp;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let url: string;
  beforeAll(async () => {
    upstream = await startUpstream();
    t = await createTestApp({ config: { chat: { upstream_url: upstream.url }, websocket: { heartbeat_interval: 5 } } });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(async () => {
    await t?.close();
    upstream?.server.close();
  });

  it('forwards the message with identity and license headers and streams the reply back in chunks', async () => {
    const { token, userId, email } = await registerUser(t.app);
    const c = await connect(url, { authorization: `Bearer ${token}` });
    await c.next();
    c.send({ type: 'message', id: 'q1', text: 'héllo' });
    const frames: Frame[] = [];
    for (let f = await c.next(); f.type !== 'reply_end'; f = await c.next()) frames.push(f);
    expect(frames.length).toBeGreaterThan(1); // streamed, not buffered into one frame
    expect(frames.every((f) => f.type === 'reply' && f.id === 'q1')).toBe(true);
    expect(frames.map((f) => f.text).join('')).toBe('You said: héllo ✓');
    const call = upstream.seen.at(-1);
    expect(call?.body).toEqual({ id: 'q1', text: 'héllo' });
    expect(call?.headers).toMatchObject({
      'x-gateway-user-id': userId,
      'x-gateway-user-email': email,
      'x-gateway-channel': 'websocket',
      'x-gateway-license': 'free',
    });
    expect(call?.headers.authorization).toBeUndefined(); // the user's token never leaves the gateway
    c.ws.close();
  });

  // Regression: fetch refuses header values with characters above U+00FF, so a user with an internationalised address
  // (from a provider) or a license feature with such text never got a reply: every message was CHAT_UNAVAILABLE.
  it('an address or license features beyond Latin-1 reach the upstream, encoded losslessly', async () => {
    const { token, userId } = await registerUser(t.app);
    const email = `用户.ö.${Date.now()}@example.com`;
    await t.db.query('UPDATE users SET email = $2 WHERE id = $1', [userId, email]);
    await t.db.query(
      `INSERT INTO user_licenses (user_id, license_type, features) VALUES ($1, 'free', $2::jsonb)
       ON CONFLICT (user_id) DO UPDATE SET features = EXCLUDED.features`,
      [userId, JSON.stringify({ chat: true, label: 'Pro ✓ für 你' })],
    );
    const c = await connect(url, { authorization: `Bearer ${token}` });
    await c.next();
    c.send({ type: 'message', id: 'q3', text: 'hi' });
    const frames: Frame[] = [];
    for (let f = await c.next(); f.type !== 'reply_end'; f = await c.next()) frames.push(f);
    expect(frames.map((f) => f.text).join('')).toBe('You said: hi ✓');
    const headers = upstream.seen.at(-1)?.headers ?? {};
    expect(decodeURIComponent(String(headers['x-gateway-user-email']))).toBe(email);
    expect(JSON.parse(String(headers['x-gateway-license-features']))).toMatchObject({ label: 'Pro ✓ für 你' });
    c.ws.close();
  });

  // Regression (review): an ASCII address was sent as it is even with a '%' in it, so '%63eo@corp.com' decoded to
  // 'ceo@corp.com', and '%C3%A9@corp.com' could not be told from 'é@corp.com'.
  it('decoding the address header always gives the address back', () => {
    const header = (email: string) =>
      identityHeaders({
        userId: 'u',
        email,
        channel: 'websocket',
        license: { type: 'free', features: {} },
        sessionId: 's',
      } as never)['x-gateway-user-email'] as string;
    for (const email of ['ceo@corp.com', '%63eo@corp.com', '%C3%A9@corp.com', 'é@corp.com', '%ZZ@x.example']) {
      expect(decodeURIComponent(header(email))).toBe(email);
    }
    expect(header('ceo@corp.com')).toBe('ceo@corp.com');
  });

  it('answers CHAT_UNAVAILABLE with the id when the upstream fails, and the socket stays usable', async () => {
    const { token } = await registerUser(t.app);
    const c = await connect(url, { authorization: `Bearer ${token}` });
    await c.next();
    c.send({ type: 'message', id: 'q2', text: 'fail' });
    expect(await c.next()).toEqual({ type: 'error', code: 'CHAT_UNAVAILABLE', id: 'q2' });
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  });

  // Regression: fetch followed the upstream's redirects, re-sending the message and the identity headers wherever a
  // compromised or misconfigured upstream pointed (an internal address), and streaming that answer to the user.
  it('does not follow an upstream redirect: CHAT_UNAVAILABLE, and nothing reaches the target', async () => {
    const reached: IncomingHttpHeaders[] = [];
    const internal = createServer((req, res) => {
      reached.push(req.headers);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('internal secrets');
    });
    await new Promise<void>((resolve) => internal.listen(0, '127.0.0.1', resolve));
    const target = `http://127.0.0.1:${(internal.address() as AddressInfo).port}/admin`;
    const { token } = await registerUser(t.app);
    const c = await connect(url, { authorization: `Bearer ${token}` });
    await c.next();
    c.send({ type: 'message', id: 'q3', text: `redirect ${target}` });
    expect(await c.next()).toEqual({ type: 'error', code: 'CHAT_UNAVAILABLE', id: 'q3' });
    expect(reached).toEqual([]);
    c.ws.close();
    await new Promise<void>((resolve) => internal.close(() => resolve()));
  });
});
