import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/index.js';
import { createLicenseEvents, createLicenseResolver, type LicenseChanged } from '../../src/licenses/index.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: an event's one read of user_licenses failing (a timeout, a failover) dropped the change with a warning,
// so open sockets kept a license the user no longer had (one that took chat away never closed them).
describe('license-changed events: a failed read is retried', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  /** License events on the real database, whose reads of `userId`'s license fail while `fail()` says so. */
  const eventsFailingFor = (userId: string, fail: (attempt: number) => boolean) => {
    const reads = { attempts: 0, failed: 0 };
    const db = new Proxy(t.db, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver);
        return async (sql: string, params?: unknown[]) => {
          if (/FROM user_licenses/.test(sql) && params?.[0] === userId && fail(++reads.attempts)) {
            reads.failed++;
            throw new Error('timeout exceeded when trying to connect');
          }
          return target.query(sql, params);
        };
      },
    }) as Database;
    const warnings: string[] = [];
    const events = createLicenseEvents(db, createLicenseResolver(t.config.licenses), {
      warn: (_obj, msg) => warnings.push(msg),
    });
    const seen: Array<{ event: LicenseChanged; at: number }> = [];
    events.onLicenseChanged((event) => {
      if (event.userId === userId) seen.push({ event, at: Date.now() });
    });
    return { events, reads, seen, warnings };
  };

  const takeChatAway = (userId: string) =>
    t.db.query(`INSERT INTO user_licenses (user_id, license_type, features) VALUES ($1, 'free', '{"chat": false}')`, [
      userId,
    ]);

  it('a change whose first two reads failed is still delivered, with the license in force', async () => {
    const { userId } = await registerUser(t.app);
    const { events, reads, seen, warnings } = eventsFailingFor(userId, (attempt) => attempt <= 2);
    await events.start();
    try {
      await takeChatAway(userId);
      await expect.poll(() => seen.length, { timeout: 5000 }).toBe(1);
      expect(reads).toEqual({ attempts: 3, failed: 2 });
      expect(warnings.filter((w) => w.startsWith('could not read a changed license'))).toHaveLength(2);
      expect(seen[0]?.event.license).toMatchObject({ type: 'free', features: { chat: false } });
    } finally {
      await events.stop();
    }
  });

  it('a newer change for the user takes over a waiting retry at once, and only the license in force is delivered', async () => {
    const { userId } = await registerUser(t.app);
    let failing = true;
    const { events, reads, seen } = eventsFailingFor(userId, () => failing);
    await events.start();
    try {
      await takeChatAway(userId);
      // Three failures: the next retry is 2 s away.
      await expect.poll(() => reads.failed, { timeout: 5000 }).toBe(3);
      failing = false;
      const changedAt = Date.now();
      await t.db.query(`UPDATE user_licenses SET license_type = 'pro', features = '{}' WHERE user_id = $1`, [userId]);
      await expect.poll(() => seen.length, { timeout: 5000 }).toBe(1);
      expect((seen[0]?.at ?? Infinity) - changedAt).toBeLessThan(1500);
      expect(seen[0]?.event.license).toMatchObject({ type: 'pro', features: { chat: true } });
      // The superseded retry reads nothing more and delivers nothing.
      await new Promise((r) => setTimeout(r, 2500));
      expect(seen).toHaveLength(1);
      expect(reads.attempts).toBe(4);
    } finally {
      await events.stop();
    }
  });

  it('stop() ends the retries', async () => {
    const { userId } = await registerUser(t.app);
    const { events, reads, seen } = eventsFailingFor(userId, () => true);
    await events.start();
    await takeChatAway(userId);
    await expect.poll(() => reads.failed, { timeout: 5000 }).toBeGreaterThanOrEqual(1);
    await events.stop();
    const after = reads.attempts;
    await new Promise((r) => setTimeout(r, 1500));
    expect(reads.attempts).toBe(after);
    expect(seen).toHaveLength(0);
  });
});
