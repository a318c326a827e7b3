import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';
import { connect, listen, type WsClient } from '../../helpers/ws-client.js';

// The shipped free license: max_ws_connections 2, messages_per_minute 10.
describe('/ws/chat: license limits per user', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await createTestApp({ config: { websocket: { heartbeat_interval: 5 } } });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  const open = async (token: string): Promise<WsClient> => {
    const c = await connect(url, { authorization: `Bearer ${token}` });
    expect((await c.next()).type).toBe('auth_ok');
    return c;
  };

  it('refuses a connection over max_ws_connections: 429 on the upgrade, 4429 by frame; a freed slot is reusable', async () => {
    const { token, userId } = await registerUser(t.app);
    const a = await open(token);
    const b = await open(token);
    const err = await connect(url, { authorization: `Bearer ${token}` }).catch((e) => e);
    expect(err.status).toBe(429);
    expect(JSON.parse(err.body)).toMatchObject({ error: { code: 'CONNECTION_LIMIT' } });

    const c = await connect(url);
    c.send({ type: 'auth', token });
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'CONNECTION_LIMIT' });
    expect(await c.closed).toEqual({ code: 4429, reason: 'CONNECTION_LIMIT' });

    a.ws.close();
    await vi.waitFor(() => expect(t.app.usageLimits.connections(userId)).toBe(1));
    const d = await open(token);
    b.ws.close();
    d.ws.close();
  });

  it('counts connections per user, not per session: a second login shares the limit', async () => {
    const { token, email, password } = await registerUser(t.app);
    const login = await t.app.inject({ method: 'POST', url: '/auth/login', payload: { email, password } });
    const second = (login.json() as { token: string }).token;
    const a = await open(token);
    const b = await open(second);
    const err = await connect(url, { authorization: `Bearer ${second}` }).catch((e) => e);
    expect(err.status).toBe(429);
    a.ws.close();
    b.ws.close();
  });

  it('honours a per-user override in user_licenses.resource_limits', async () => {
    const { token, userId } = await registerUser(t.app);
    await t.db.query(
      `INSERT INTO user_licenses (user_id, license_type, resource_limits) VALUES ($1, 'free', '{"max_ws_connections": 1}')`,
      [userId],
    );
    const a = await open(token);
    const err = await connect(url, { authorization: `Bearer ${token}` }).catch((e) => e);
    expect(err.status).toBe(429);
    a.ws.close();
  });

  it('answers messages over messages_per_minute with RATE_LIMITED and retryAfter, across the user sockets', async () => {
    const { token } = await registerUser(t.app);
    const a = await open(token);
    const b = await open(token);
    for (let i = 0; i < 10; i++) {
      const c = i % 2 ? a : b;
      c.send({ type: 'message', id: `m${i}`, text: 'hi' });
      expect(await c.next()).toMatchObject({ type: 'reply', id: `m${i}` });
      expect(await c.next()).toMatchObject({ type: 'reply_end', id: `m${i}` });
    }
    a.send({ type: 'message', id: 'over', text: 'hi' });
    const refused = await a.next();
    expect(refused).toMatchObject({ type: 'error', code: 'RATE_LIMITED', id: 'over' });
    expect(refused.retryAfter).toBeGreaterThanOrEqual(1);
    b.send({ type: 'message', id: 'over2', text: 'hi' });
    expect(await b.next()).toMatchObject({ type: 'error', code: 'RATE_LIMITED', id: 'over2' });
    // Still open and responsive: limits answer, they do not disconnect.
    a.send({ type: 'ping' });
    expect(await a.next()).toEqual({ type: 'pong' });
    a.ws.close();
    b.ws.close();
  });

  it('holds the message limit under a burst: exactly the allowance is answered', async () => {
    const { token } = await registerUser(t.app);
    const a = await open(token);
    for (let i = 0; i < 30; i++) a.send({ type: 'message', id: `b${i}`, text: 'x' });
    const frames = [];
    for (let i = 0; i < 10 * 2 + 20; i++) frames.push(await a.next());
    expect(frames.filter((f) => f.type === 'reply_end')).toHaveLength(10);
    expect(frames.filter((f) => f.type === 'error' && f.code === 'RATE_LIMITED')).toHaveLength(20);
    a.ws.close();
  });

  it('an open socket takes a changed license at once: new limits, and closed when chat is taken away', async () => {
    const { token, userId } = await registerUser(t.app);
    const a = await open(token);
    const say = async (id: string) => {
      a.send({ type: 'message', id, text: 'hi' });
      return a.next();
    };
    expect(await say('before')).toMatchObject({ type: 'reply', id: 'before' });
    expect(await a.next()).toMatchObject({ type: 'reply_end', id: 'before' });

    // The gateway's sockets hear of a change before a handler registered later (this one) does.
    const changed = () =>
      new Promise<void>((resolve) => {
        const off = t.app.licenseEvents.onLicenseChanged((event) => {
          if (event.userId !== userId) return;
          off();
          resolve();
        });
      });

    // Down to one message a minute: the bucket holds what the new limit allows (one), then refuses, on this socket,
    // without reconnecting.
    let heard = changed();
    await t.db.query(
      `INSERT INTO user_licenses (user_id, license_type, resource_limits) VALUES ($1, 'free', '{"messages_per_minute": 1}')`,
      [userId],
    );
    await heard;
    expect(await say('last')).toMatchObject({ type: 'reply', id: 'last' });
    expect(await a.next()).toMatchObject({ type: 'reply_end', id: 'last' });
    expect(await say('over')).toMatchObject({ type: 'error', code: 'RATE_LIMITED', id: 'over' });

    heard = changed();
    await t.db.query(`UPDATE user_licenses SET features = '{"chat": false}' WHERE user_id = $1`, [userId]);
    await heard;
    expect(await a.next()).toEqual({ type: 'error', code: 'FORBIDDEN' });
    expect(await a.closed).toEqual({ code: 4403, reason: 'FORBIDDEN' });
  });

  it('a license change that arrives while a socket is being authenticated applies to it too', async () => {
    const { token, userId } = await registerUser(t.app);
    const authenticate = t.app.authenticator.authenticateToken.bind(t.app.authenticator);
    const spy = vi.spyOn(t.app.authenticator, 'authenticateToken').mockImplementationOnce(async (...args) => {
      const context = await authenticate(...args); // read with chat on...
      const heard = new Promise<void>((resolve) => {
        const off = t.app.licenseEvents.onLicenseChanged((event) => {
          if (event.userId !== userId) return;
          off();
          resolve();
        });
      });
      // ...and chat is taken away before the socket is admitted.
      await t.db.query(
        `INSERT INTO user_licenses (user_id, license_type, features) VALUES ($1, 'free', '{"chat": false}')`,
        [userId],
      );
      await heard;
      return context;
    });
    const c = await connect(url);
    c.send({ type: 'auth', token });
    expect(await c.next()).toEqual({ type: 'auth_error', code: 'FORBIDDEN' });
    expect(await c.closed).toEqual({ code: 4403, reason: 'FORBIDDEN' });
    spy.mockRestore();
  });
});
