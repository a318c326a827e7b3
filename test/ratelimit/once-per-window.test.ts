import { describe, expect, it } from 'vitest';
import { createOncePerWindow } from '../../src/ratelimit/once-per-window.js';

describe('once per window (audit rows a client can repeat at request rate)', () => {
  it('is true once per key and window, and again once the window has ended', () => {
    let t = 0;
    const once = createOncePerWindow({ windowMs: 1000, now: () => t });
    expect(once.first('a')).toBe(true);
    expect(once.first('a')).toBe(false);
    expect(once.first('b')).toBe(true);
    t = 999;
    expect(once.first('a')).toBe(false);
    t = 1000;
    expect(once.first('a')).toBe(true);
    expect(once.first('a')).toBe(false);
    t = 1500;
    expect(once.first('b')).toBe(true);
  });

  it('keeps at most maxKeys: a flood of distinct keys forgets the oldest early, never grows without bound', () => {
    const once = createOncePerWindow({ windowMs: 60_000, maxKeys: 3, now: () => 0 });
    for (const k of ['a', 'b', 'c', 'd']) expect(once.first(k)).toBe(true);
    expect(once.first('a')).toBe(true); // forgotten to make room for d
    expect(once.first('d')).toBe(false);
  });
});
