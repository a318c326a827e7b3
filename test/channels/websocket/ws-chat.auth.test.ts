import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildApp } from '../../../src/app.js';
import { createTestApp, registerUser, type TestApp, testConfig } from '../../helpers/test-app.js';
import { connect, listen } from '../../helpers/ws-client.js';

describe('/ws/chat: the two ways in and every refusal', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await createTestApp({ config: { websocket: { auth_timeout: 0.3, heartbeat_interval: 5 } } });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  it('accepts a bearer token on the upgrade request and says auth_ok', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await connect(url, { authorization: `Bearer ${token}` });
    expect(await c.next()).toMatchObject({ type: 'auth_ok', userId, license: 'free' });
    c.ws.close();
  });

  it('accepts {"type":"auth","token"} as the first frame', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await connect(url);
    c.send({ type: 'auth', token });
    const ok = await c.next();
    expect(ok).toMatchObject({ type: 'auth_ok', userId, license: 'free' });
    expect(typeof ok.expiresAt).toBe('string');
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
    expect(t.logs.text).not.toContain(token); // logs are at debug level here
  });

  it('refuses an invalid bearer with HTTP 401 before any upgrade', async () => {
    const err = await connect(url, { authorization: 'Bearer not.a.token' }).catch((e) => e);
    expect(err.status).toBe(401);
    expect(JSON.parse(err.body)).toMatchObject({ success: false, error: { code: 'INVALID_TOKEN' } });
  });

  it('answers a plain HTTP request (no Upgrade) with 426 UPGRADE_REQUIRED in the JSON envelope', async () => {
    const { token } = await registerUser(t.app);
    const variants: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${token}` },
      { authorization: 'Bearer x' },
    ];
    for (const headers of variants) {
      const res = await fetch(url.replace(/^ws:/, 'http:'), { headers });
      expect(res.status).toBe(426);
      expect(res.headers.get('upgrade')).toBe('websocket');
      expect(await res.json()).toMatchObject({ success: false, error: { code: 'UPGRADE_REQUIRED' } });
    }
    const head = await fetch(url.replace(/^ws:/, 'http:'), { method: 'HEAD' });
    expect(head.status).toBe(426);
    // And sockets still open.
    const c = await connect(url, { authorization: `Bearer ${token}` });
    expect((await c.next()).type).toBe('auth_ok');
    c.ws.close();
  });

  it('refuses a non-bearer Authorization header with HTTP 401', async () => {
    const err = await connect(url, { authorization: 'Basic dXNlcjpwYXNz' }).catch((e) => e);
    expect(err.status).toBe(401);
  });

  it('refuses the token of a logged-out session with HTTP 401', async () => {
    const { token } = await registerUser(t.app);
    await t.app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${token}` } });
    const err = await connect(url, { authorization: `Bearer ${token}` }).catch((e) => e);
    expect(err.status).toBe(401);
  });

  it('closes with 4401 INVALID_TOKEN for a bad token in the auth frame', async () => {
    const c = await connect(url);
    c.send({ type: 'auth', token: 'garbage' });
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'INVALID_TOKEN' });
    expect(await c.closed).toEqual({ code: 4401, reason: 'INVALID_TOKEN' });
  });

  it('closes with 4401 INVALID_TOKEN for an auth frame without a string token', async () => {
    const c = await connect(url);
    c.send({ type: 'auth', token: 42 });
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'INVALID_TOKEN' });
    expect((await c.closed).code).toBe(4401);
  });

  it('closes with 4401 AUTH_REQUIRED when something else comes first', async () => {
    for (const first of [{ type: 'message', id: '1', text: 'hi' }, { type: 'ping' }, '{not json', '[]']) {
      const c = await connect(url);
      c.send(first);
      expect(await c.next()).toEqual({ type: 'auth_error', code: 'AUTH_REQUIRED' });
      expect(await c.closed).toEqual({ code: 4401, reason: 'AUTH_REQUIRED' });
    }
  });

  it('closes with 4401 when a binary frame comes first', async () => {
    const c = await connect(url);
    c.ws.send(Buffer.from([1, 2, 3]));
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'AUTH_REQUIRED' });
    expect((await c.closed).code).toBe(4401);
  });

  it('closes with 4408 AUTH_TIMEOUT when no auth frame comes in time', async () => {
    const c = await connect(url);
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'AUTH_TIMEOUT' });
    expect(await c.closed).toEqual({ code: 4408, reason: 'AUTH_TIMEOUT' });
  });

  it('refuses a license without the chat feature: 403 on the upgrade, 4403 by frame', async () => {
    const { token, userId } = await registerUser(t.app);
    await t.db.query(
      `INSERT INTO user_licenses (user_id, license_type, features) VALUES ($1, 'free', '{"chat": false}')`,
      [userId],
    );
    const err = await connect(url, { authorization: `Bearer ${token}` }).catch((e) => e);
    expect(err.status).toBe(403);
    const c = await connect(url);
    c.send({ type: 'auth', token });
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'FORBIDDEN' });
    expect((await c.closed).code).toBe(4403);
  });

  it('caps sockets waiting for their auth frame (websocket.max_unauthenticated): more are closed with 1013', async () => {
    // A second gateway on the same database (no new database: cheap) with a cap of 2.
    const capped = await buildApp({
      config: testConfig(t.testDb.dataDir, { websocket: { max_unauthenticated: 2, auth_timeout: 5 } }),
      db: t.db,
      logger: false,
    });
    try {
      const cappedUrl = `${await listen(capped)}/ws/chat`;
      const a = await connect(cappedUrl);
      const b = await connect(cappedUrl);
      const c = await connect(cappedUrl);
      expect(await c.closed).toEqual({ code: 1013, reason: 'SERVER_BUSY' });
      // A bearer on the upgrade is not waiting: it is let in.
      const { token } = await registerUser(capped);
      const withHeader = await connect(cappedUrl, { authorization: `Bearer ${token}` });
      expect((await withHeader.next()).type).toBe('auth_ok');
      // Once one of the waiting sockets authenticates, a new one may wait again.
      a.send({ type: 'auth', token });
      expect((await a.next()).type).toBe('auth_ok');
      const d = await connect(cappedUrl);
      d.send({ type: 'ping' });
      expect(await d.next()).toEqual({ type: 'auth_error', code: 'AUTH_REQUIRED' });
      for (const s of [a, b, withHeader]) s.ws.close();
    } finally {
      await capped.close();
    }
  });

  // Regression: websocket.max_unauthenticated was one pool for everyone, so one client address could hold every place
  // (reopening each auth_timeout) and every browser got 1013.
  it('caps the sockets one client address may have waiting for their auth frame at 10; other addresses still wait', async () => {
    const capped = await buildApp({
      config: testConfig(t.testDb.dataDir, { websocket: { max_unauthenticated: 100, auth_timeout: 5 } }),
      db: t.db,
      logger: false,
    });
    try {
      const cappedUrl = `${await listen(capped)}/ws/chat`;
      const waiting = await Promise.all(Array.from({ length: 10 }, () => connect(cappedUrl)));
      const over = await connect(cappedUrl);
      expect(await over.closed).toEqual({ code: 1013, reason: 'SERVER_BUSY' });
      expect(capped.chatSockets.unauthenticated).toBe(10);

      // Another address (all of 127.0.0.0/8 is loopback) is not held up by this one.
      const elsewhere = new WebSocket(cappedUrl, { localAddress: '127.0.0.2', perMessageDeflate: false });
      await new Promise((resolve, reject) => elsewhere.once('open', resolve).once('error', reject));
      const { token } = await registerUser(capped);
      elsewhere.send(JSON.stringify({ type: 'auth', token }));
      const frame = await new Promise<string>((resolve) => elsewhere.once('message', (data) => resolve(String(data))));
      expect(JSON.parse(frame)).toMatchObject({ type: 'auth_ok' });
      elsewhere.close();

      // Once one of this address's sockets authenticates, it may have one more waiting.
      const [first] = waiting;
      first?.send({ type: 'auth', token });
      expect((await first?.next())?.type).toBe('auth_ok');
      const again = await connect(cappedUrl);
      again.send({ type: 'ping' });
      expect(await again.next()).toEqual({ type: 'auth_error', code: 'AUTH_REQUIRED' });
      for (const s of waiting) s.ws.close();
    } finally {
      await capped.close();
    }
  });

  it('sends the 101 response and auth_ok in one write (one packet for the client to read)', async () => {
    const { token } = await registerUser(t.app);
    // Count the writes each accepted socket hands to the kernel (Node's _write/_writev, one per flush).
    const writes: string[][] = [];
    const onConnection = (socket: Socket) => {
      const flushes: string[] = [];
      writes.push(flushes);
      const write = socket._write.bind(socket);
      const writev = socket._writev?.bind(socket);
      socket._write = (chunk, encoding, cb) => {
        flushes.push(String(chunk));
        write(chunk, encoding, cb);
      };
      socket._writev = (chunks, cb) => {
        flushes.push(chunks.map((c) => String(c.chunk)).join(''));
        writev?.(chunks, cb);
      };
    };
    t.app.server.on('connection', onConnection);
    try {
      const c = await connect(url, { authorization: `Bearer ${token}` });
      expect(await c.next()).toMatchObject({ type: 'auth_ok' });
      c.ws.close();
    } finally {
      t.app.server.off('connection', onConnection);
    }
    const [flushes] = writes;
    expect(flushes?.[0]).toMatch(/^HTTP\/1\.1 101 /);
    expect(flushes?.[0]).toContain('{"type":"auth_ok"');
  });
});
