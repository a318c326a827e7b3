import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/index.js';
import { createLicenseEvents, createLicenseResolver, type LicenseChanged } from '../../src/licenses/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: each event's license was read concurrently and handed over when its read returned, so two quick changes
// whose reads answered out of order left the handlers (open sockets) with the older license as the last word.
describe('license-changed events: one user’s events are delivered in order', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('two quick changes, the first read answered late: the last event delivered is the license in force', async () => {
    const { userId } = await registerUser(t.app);
    const other = await registerUser(t.app);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let firstReadDone!: () => void;
    const firstRead = new Promise<void>((r) => {
      firstReadDone = r;
    });
    let reads = 0;
    // The real database; only the answer to the first read of this user's license is held back (a slow connection).
    const slowDb = new Proxy(t.db, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver);
        return async (sql: string, params?: unknown[]) => {
          const result = await target.query(sql, params);
          if (/FROM user_licenses/.test(sql) && params?.[0] === userId && ++reads === 1) {
            firstReadDone();
            await gate;
          }
          return result;
        };
      },
    }) as Database;
    const events = createLicenseEvents(slowDb, createLicenseResolver(t.config.licenses), { warn() {} });
    const seen: LicenseChanged[] = [];
    let otherSeen!: (e: LicenseChanged) => void;
    const otherEvent = new Promise<LicenseChanged>((r) => {
      otherSeen = r;
    });
    let bothDelivered!: () => void;
    const both = new Promise<void>((r) => {
      bothDelivered = r;
    });
    events.onLicenseChanged((e) => {
      if (e.userId === other.userId) otherSeen(e);
      if (e.userId !== userId) return;
      seen.push(e);
      if (seen.length === 2) bothDelivered();
    });
    await events.start();
    try {
      await t.db.query(`INSERT INTO user_licenses (user_id, license_type) VALUES ($1, 'pro')`, [userId]);
      await firstRead;
      await t.db.query(
        `UPDATE user_licenses SET license_type = 'free', features = '{"chat": false}' WHERE user_id = $1`,
        [userId],
      );
      // Another user's events do not wait behind this one's.
      await t.db.query(`INSERT INTO user_licenses (user_id, license_type) VALUES ($1, 'enterprise')`, [other.userId]);
      expect((await otherEvent).license.type).toBe('enterprise');
      expect(seen).toHaveLength(0);
      release();
      await both;
      expect(seen.map((e) => [e.license.type, e.license.features.chat])).toEqual([
        ['pro', true],
        ['free', false],
      ]);
    } finally {
      release();
      await events.stop();
    }
  });
});
