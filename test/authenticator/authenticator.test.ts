import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

describe('Authenticator', () => {
  let t: TestApp;
  let user: Awaited<ReturnType<typeof registerUser>>;
  beforeAll(async () => {
    t = await createTestApp();
    user = await registerUser(t.app, { name: 'Ada' });
  });
  afterAll(() => t?.close());

  it('authenticateToken: the full AuthContext, free license defaults from config without a user_licenses row', async () => {
    const ctx = await t.app.authenticator.authenticateToken(user.token);
    expect(ctx).toMatchObject({
      userId: user.userId,
      email: user.email,
      name: 'Ada',
      channel: 'rest',
      license: {
        type: 'free',
        features: t.config.licenses.types.free?.features,
        resourceLimits: t.config.licenses.types.free?.resource_limits,
      },
    });
    expect(ctx?.sessionId).toMatch(/^sess_/);
    expect(ctx?.expiresAt).toBeInstanceOf(Date);
  });

  it('a user_licenses row: its type’s defaults overridden by its own features and limits', async () => {
    await t.db.query(
      `INSERT INTO user_licenses (user_id, license_type, features, resource_limits)
       VALUES ($1, 'pro', '{"beta": true}', '{"messages_per_minute": 999}')`,
      [user.userId],
    );
    await t.app.sessionEvents.sync(); // the change reaches this process (and drops its cached session) by NOTIFY
    const ctx = await t.app.authenticator.authenticateToken(user.token);
    expect(ctx?.license.type).toBe('pro');
    expect(ctx?.license.features).toMatchObject({ ...t.config.licenses.types.pro?.features, beta: true });
    expect(ctx?.license.resourceLimits).toMatchObject({
      max_ws_connections: t.config.licenses.types.pro?.resource_limits.max_ws_connections,
      messages_per_minute: 999,
    });
  });

  it('authenticateRequest and authenticateWebSocket read the bearer header', async () => {
    const headers = { authorization: `Bearer ${user.token}` };
    expect((await t.app.authenticator.authenticateRequest({ headers }))?.userId).toBe(user.userId);
    const ws = await t.app.authenticator.authenticateWebSocket({ headers });
    expect(ws?.channel).toBe('websocket');
    expect(await t.app.authenticator.authenticateWebSocket({ headers: {} })).toBeNull();
    expect(await t.app.authenticator.authenticateRequest({ headers: { authorization: 'Bearer x' } })).toBeNull();
  });

  it('authenticateTelegram resolves a linked account (the design’s raw SQL insert) with its license', async () => {
    expect(await t.app.authenticator.authenticateTelegram(987654321)).toBeNull();
    await t.db.query(
      "INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, 'telegram', '987654321')",
      [user.userId],
    );
    const ctx = await t.app.authenticator.authenticateTelegram(987654321);
    expect(ctx).toMatchObject({ userId: user.userId, sessionId: null, channel: 'telegram', license: { type: 'pro' } });
    expect(await t.app.authenticator.authenticateTelegram('987654321')).toMatchObject({ userId: user.userId });
  });

  it('a deleted user’s token stops working', async () => {
    const other = await registerUser(t.app);
    await t.db.query('DELETE FROM users WHERE id = $1', [other.userId]);
    expect(await t.app.authenticator.authenticateToken(other.token)).toBeNull();
  });

  it('many sessions at once: each answered by its own row, each use recorded', async () => {
    const users = await Promise.all(Array.from({ length: 12 }, () => registerUser(t.app)));
    const [expired, disabled, deleted] = users;
    await t.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1`, [
      expired?.userId,
    ]);
    await t.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [disabled?.userId]);
    await t.db.query('DELETE FROM sessions WHERE user_id = $1', [deleted?.userId]);
    await t.app.sessionEvents.sync();
    // Each token twice, on two channels, all in flight together.
    const results = await Promise.all(
      users.flatMap((u) => [
        t.app.authenticator.authenticateToken(u.token, 'rest'),
        t.app.authenticator.authenticateToken(u.token, 'websocket'),
      ]),
    );
    users.forEach((u, i) => {
      const [rest, ws] = [results[2 * i], results[2 * i + 1]];
      if (i < 3) {
        expect([rest, ws]).toEqual([null, null]);
      } else {
        expect(rest).toMatchObject({ userId: u.userId, email: u.email, channel: 'rest' });
        expect(ws).toMatchObject({ userId: u.userId, email: u.email, channel: 'websocket' });
      }
    });
    await t.app.sessions.flushUses(); // written behind: about once a second, all uses in one UPDATE
    const { rows } = await t.db.query<{ user_id: string; last_channel: string | null }>(
      'SELECT user_id, last_channel FROM sessions WHERE user_id = ANY($1::text[])',
      [users.slice(3).map((u) => u.userId)],
    );
    expect(rows).toHaveLength(9);
    for (const row of rows) expect(['rest', 'websocket']).toContain(row.last_channel);
  });
});
