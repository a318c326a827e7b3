import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LICENSE_CHANGED_CHANNEL, type LicenseChanged } from '../../src/licenses/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

describe('license-changed events (trigger on user_licenses + LISTEN/NOTIFY)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const next = (userId: string) =>
    new Promise<LicenseChanged>((resolve) => {
      const off = t.app.licenseEvents.onLicenseChanged((e) => {
        if (e.userId !== userId) return;
        off();
        resolve(e);
      });
    });

  it('fires for a change made outside the gateway (plain SQL), with the license now in force', async () => {
    const { userId, token } = await registerUser(t.app);
    const event = next(userId);
    await t.db.query(
      `INSERT INTO user_licenses (user_id, license_type, resource_limits) VALUES ($1, 'pro', '{"messages_per_minute": 5}')`,
      [userId],
    );
    expect(await event).toEqual({
      userId,
      license: {
        type: 'pro',
        features: { chat: true, passkeys: true, priority: true },
        resourceLimits: { max_ws_connections: 10, messages_per_minute: 5 },
      },
    });
    // The Authenticator reads user_licenses on each authentication: no new login needed.
    const ctx = await t.app.authenticator.authenticateToken(token);
    expect(ctx?.license.resourceLimits.messages_per_minute).toBe(5);

    const removed = next(userId);
    await t.db.query('DELETE FROM user_licenses WHERE user_id = $1', [userId]);
    expect((await removed).license.type).toBe('free');
  });

  it('ignores malformed payloads on the channel', async () => {
    const { userId } = await registerUser(t.app);
    const event = next(userId);
    await t.db.notify(LICENSE_CHANGED_CHANNEL, 'not json');
    await t.db.notify(LICENSE_CHANGED_CHANNEL, '{"uid": 42}');
    await t.db.query(`INSERT INTO user_licenses (user_id, license_type) VALUES ($1, 'enterprise')`, [userId]);
    expect((await event).license.type).toBe('enterprise');
  });
});
