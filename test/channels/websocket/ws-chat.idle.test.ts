import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';
import { connectSignedIn, listen, within } from '../../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Regression: the Authenticator saw a socket only at its handshake, so with auth.session.idle_timeout a user chatting
// without pause was logged out everywhere else (and refused on reconnect), while an idle socket chatted on.
describe('/ws/chat with auth.session.idle_timeout', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await createTestApp({
      config: { auth: { session: { idle_timeout: 2 } }, websocket: { heartbeat_interval: 60 } },
    });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  const open = (token: string) => connectSignedIn(url, token);
  const restStatus = async (token: string) =>
    (await t.app.inject({ url: '/auth/session', headers: { authorization: `Bearer ${token}` } })).statusCode;

  it('counts each chat message as a use: chatting for longer than the idle timeout keeps the session', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await open(token);
    const { rows: before } = await t.db.query<{ at: Date }>(
      'SELECT last_used_at AS at FROM sessions WHERE user_id = $1',
      [userId],
    );
    for (let i = 0; i < 8; i++) {
      c.send({ type: 'message', id: `m${i}`, text: 'still here' });
      expect(await c.next()).toMatchObject({ type: 'reply', id: `m${i}` });
      expect(await c.next()).toMatchObject({ type: 'reply_end', id: `m${i}` });
      await sleep(500);
    }
    expect(await restStatus(token)).toBe(200);
    const again = await open(token);
    again.ws.close();
    // Written for other processes too (their idle check reads the row).
    await t.app.sessions.flushUses();
    const { rows: after } = await t.db.query<{ at: Date }>(
      'SELECT last_used_at AS at FROM sessions WHERE user_id = $1',
      [userId],
    );
    expect(after[0]?.at.getTime()).toBeGreaterThan((before[0]?.at.getTime() ?? 0) + 3000);
    c.send({ type: 'ping' });
    expect(await c.next()).toEqual({ type: 'pong' });
    c.ws.close();
  }, 20_000);

  it('closes a socket idle for longer than the idle timeout with 4409 SESSION_EXPIRED; pings are no use', async () => {
    const { token } = await registerUser(t.app);
    const c = await open(token);
    const pinging = setInterval(() => c.send({ type: 'ping' }), 300);
    try {
      let frame = await c.next(4000);
      while (frame.type === 'pong') frame = await c.next(4000);
      expect(frame).toEqual({ type: 'error', code: 'SESSION_EXPIRED' });
    } finally {
      clearInterval(pinging);
    }
    expect(await c.closed).toEqual({ code: 4409, reason: 'SESSION_EXPIRED' });
    expect(await restStatus(token)).toBe(401);
  }, 15_000);

  it('keeps a silent socket open while its session is used elsewhere: through REST here, or another process', async () => {
    const { token } = await registerUser(t.app);
    const viaRest = await open(token);
    const other = await registerUser(t.app);
    const viaRow = await open(other.token);
    for (let i = 0; i < 7; i++) {
      await sleep(500);
      expect(await restStatus(token)).toBe(200);
      // Another process's use reaches this one only through the row.
      await t.db.query('UPDATE sessions SET last_used_at = now() WHERE user_id = $1', [other.userId]);
    }
    expect(await within(viaRest.closed, 100)).toBe('still open');
    expect(await within(viaRow.closed, 100)).toBe('still open');
    viaRest.ws.close();
    viaRow.ws.close();
  }, 15_000);
});
