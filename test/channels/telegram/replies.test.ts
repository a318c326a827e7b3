import { describe, expect, it } from 'vitest';
import { splitMessage } from '../../../src/channels/telegram/replies.js';

/** A UTF-16 surrogate without its other half (TypeScript's lib has no String#isWellFormed yet). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('splitMessage (Telegram accepts at most 4096 UTF-16 code units, and no blank message)', () => {
  it('leaves a reply that fits as one part', () => {
    expect(splitMessage('hello')).toEqual(['hello']);
    expect(splitMessage('a'.repeat(4096))).toEqual(['a'.repeat(4096)]);
  });

  // Regression: a cut every 4096 units split an emoji at 4095-4096 into two ill-formed parts.
  it('never cuts between the two halves of a surrogate pair', () => {
    const parts = splitMessage(`${'a'.repeat(4095)}😀 and more`);
    expect(parts).toEqual(['a'.repeat(4095), '😀 and more']);
    expect(parts.some((p) => LONE_SURROGATE.test(p))).toBe(false);
  });

  it('cuts after the last line break in the last fifth of the window, else after the last space, else at the limit', () => {
    const line = `${'x'.repeat(3500)}\n`;
    expect(splitMessage(`${line}${'y'.repeat(1000)} ${'z'.repeat(10)}`)).toEqual([
      line,
      `${'y'.repeat(1000)} zzzzzzzzzz`,
    ]);
    const words = `${'x'.repeat(4000)} `;
    expect(splitMessage(`${words}${'y'.repeat(500)}`)).toEqual([words, 'y'.repeat(500)]);
    // A line break early in the window would make a short part: cut at the limit instead.
    const early = `${'x'.repeat(1000)}\n${'y'.repeat(4000)}`;
    expect(splitMessage(early)).toEqual([early.slice(0, 4096), early.slice(4096)]);
  });

  // Regression: a reply of 4096 units and a line break gave a second part "\n", which Telegram refuses.
  it('drops blank parts, so Telegram is never asked to send an empty message', () => {
    expect(splitMessage(`${'a'.repeat(4096)}\n`)).toEqual(['a'.repeat(4096)]);
    expect(splitMessage(`${'a'.repeat(4096)}${' '.repeat(5000)}b`)).toEqual(['a'.repeat(4096), `${' '.repeat(904)}b`]);
    expect(splitMessage('')).toEqual([]);
    expect(splitMessage(' \n\t ')).toEqual([]);
  });

  it('random texts: every part fits, is well formed and not blank, and only whitespace is ever lost', () => {
    let seed = 42; // a fixed xorshift seed: the same texts on every run
    const random = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const pieces = ['a', 'bc', ' ', '\n', '😀', '👍🏽', 'é', '   ', '\n\n'];
    for (let round = 0; round < 200; round++) {
      const max = round % 2 === 0 ? 4096 : 2 + Math.floor(random() * 40);
      const length = Math.floor(random() * max * 4);
      let text = '';
      while (text.length < length) text += pieces[Math.floor(random() * pieces.length)];
      const parts = splitMessage(text, max);
      for (const part of parts) {
        expect(part.length).toBeLessThanOrEqual(max);
        expect(LONE_SURROGATE.test(part)).toBe(false);
        expect(part.trim()).not.toBe('');
      }
      expect(parts.join('').replace(/\s/g, '')).toBe(text.replace(/\s/g, ''));
    }
  });
});
