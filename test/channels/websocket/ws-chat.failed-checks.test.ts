import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';
import { connectSignedIn, listen, within } from '../../helpers/ws-client.js';

// Regression: a change to a user's row (disabled, IP allow list narrowed) reached their open sockets through one read;
// when that read failed (statement timeout, failover), the change was dropped with a warning and the sockets stayed.
describe('/ws/chat: a check after a change to a user whose read failed is retried', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await createTestApp({ config: { websocket: { heartbeat_interval: 60 } } });
    url = `${await listen(t.app)}/ws/chat`;
  });
  afterAll(() => t?.close());

  const open = (token: string) => connectSignedIn(url, token);

  /** The session reads (what a socket check after a user change makes) fail, `times` times, as if the database timed out. */
  const failSessionReads = (times: number) => {
    const db = t.db as unknown as { query: (sql: string, params?: unknown[]) => Promise<unknown> };
    const original = db.query;
    let failed = 0;
    db.query = function (this: unknown, sql: string, params?: unknown[]) {
      if (failed < times && typeof sql === 'string' && sql.includes('u.disabled_at IS NULL')) {
        failed++;
        return Promise.reject(new Error('timeout exceeded when trying to connect'));
      }
      return original.call(this, sql, params);
    };
    return {
      get failed() {
        return failed;
      },
      restore: () => {
        db.query = original;
      },
    };
  };

  it('closes the sockets of a user disabled while the first read failed (4409 SESSION_REVOKED)', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await open(token);
    const fault = failSessionReads(1);
    try {
      await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
      await expect.poll(() => fault.failed, { timeout: 3000 }).toBe(1);
    } finally {
      fault.restore();
    }
    expect(await within(c.closed, 8000)).toEqual({ code: 4409, reason: 'SESSION_REVOKED' });
  }, 15_000);

  it('closes the sockets an IP allow list narrowed while the first read failed excludes (4403 IP_NOT_ALLOWED)', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await open(token);
    const fault = failSessionReads(1);
    try {
      // The socket comes from 127.0.0.1.
      await t.db.query(`UPDATE users SET ip_allowlist = ARRAY['10.0.0.0/8'] WHERE id = $1`, [userId]);
      await expect.poll(() => fault.failed, { timeout: 3000 }).toBe(1);
    } finally {
      fault.restore();
    }
    expect(await c.next(8000)).toEqual({ type: 'error', code: 'IP_NOT_ALLOWED' });
    expect(await c.closed).toEqual({ code: 4403, reason: 'IP_NOT_ALLOWED' });
  }, 15_000);

  it('stops retrying once the user has no socket left', async () => {
    const { token, userId } = await registerUser(t.app);
    const c = await open(token);
    const fault = failSessionReads(Number.POSITIVE_INFINITY);
    try {
      await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
      await expect.poll(() => fault.failed, { timeout: 3000 }).toBe(1);
      c.ws.close();
      await c.closed;
      // The first retry is due 5 s after the failure: it finds no socket and reads nothing.
      await new Promise((r) => setTimeout(r, 6000));
      expect(fault.failed).toBe(1);
    } finally {
      fault.restore();
    }
  }, 15_000);
});
