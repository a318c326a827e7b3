import { describe, expect, it } from 'vitest';
import { createUsageLimits, limitOf } from '../../../src/channels/chat/usage-limits.js';
import type { License } from '../../../src/licenses/index.js';

const license = (resourceLimits: Record<string, unknown>): License => ({ type: 't', features: {}, resourceLimits });

describe('usage limits', () => {
  it('reads a limit only from a non-negative number; anything else means no limit', () => {
    expect(limitOf(license({ k: 5 }), 'k')).toBe(5);
    expect(limitOf(license({ k: 2.9 }), 'k')).toBe(2);
    expect(limitOf(license({ k: 0 }), 'k')).toBe(0);
    for (const v of [undefined, null, -1, '5', Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(limitOf(license({ k: v }), 'k')).toBeNull();
    }
  });

  it('spends a minute of allowance at once, then refills evenly (token bucket)', () => {
    let now = 1_000_000;
    const limits = createUsageLimits(() => now);
    const l = license({ messages_per_minute: 6 });
    for (let i = 0; i < 6; i++) expect(limits.takeMessage('u', l)).toEqual({ ok: true });
    expect(limits.takeMessage('u', l)).toEqual({ ok: false, retryAfter: 10 });
    now += 9_000;
    expect(limits.takeMessage('u', l).ok).toBe(false);
    now += 1_000; // 10 s: one message back (6 per minute)
    expect(limits.takeMessage('u', l)).toEqual({ ok: true });
    expect(limits.takeMessage('u', l).ok).toBe(false);
    now += 10 * 60_000; // a long pause refills to the cap, not beyond
    for (let i = 0; i < 6; i++) expect(limits.takeMessage('u', l).ok).toBe(true);
    expect(limits.takeMessage('u', l).ok).toBe(false);
    expect(limits.takeMessage('other', l).ok).toBe(true); // per user
    limits.stop();
  });

  it('refuses every message with a limit of 0 and none without a limit', () => {
    const limits = createUsageLimits();
    expect(limits.takeMessage('u', license({ messages_per_minute: 0 }))).toEqual({ ok: false, retryAfter: 60 });
    for (let i = 0; i < 1000; i++) expect(limits.takeMessage('v', license({})).ok).toBe(true);
    limits.stop();
  });

  it('counts connections per user; a release frees exactly one slot, once', () => {
    const limits = createUsageLimits();
    const l = license({ max_ws_connections: 2 });
    const a = limits.openConnection('u', l);
    const b = limits.openConnection('u', l);
    expect(a && b).toBeTruthy();
    expect(limits.openConnection('u', l)).toBeNull();
    a?.();
    a?.(); // idempotent
    expect(limits.connections('u')).toBe(1);
    expect(limits.openConnection('u', l)).not.toBeNull();
    expect(limits.openConnection('u', l)).toBeNull();
    limits.stop();
  });
});
