import { createSigner, createVerifier } from 'fast-jwt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createTokenCodec } from '../../src/authenticator/tokens.js';

const key = 'a-test-secret-of-at-least-thirty-two-bytes';

/** The JwtLike the codec needs, over fast-jwt (what @fastify/jwt wraps), with the verifications counted. */
function jwt() {
  const signer = createSigner({ key, algorithm: 'HS256' });
  const verifier = createVerifier({ key, algorithms: ['HS256'] });
  const calls = vi.fn((token: string): unknown => verifier(token));
  return {
    sign: (payload: object) => signer(payload as Record<string, unknown>),
    verify: <T>(token: string) => calls(token) as T,
    calls,
  };
}

describe('token codec: verified tokens remembered', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a token verified once is not verified again', () => {
    const j = jwt();
    const codec = createTokenCodec(j, { cacheSize: 10 });
    const token = codec.sign('user_1', 'sess_1', new Date(Date.now() + 3600_000));
    for (let i = 0; i < 5; i++) expect(codec.verify(token)).toMatchObject({ sub: 'user_1', sid: 'sess_1' });
    expect(j.calls).toHaveBeenCalledTimes(1);
  });

  it('a remembered token is refused once past its exp', () => {
    vi.useFakeTimers({ now: new Date('2026-11-26T12:00:00Z') });
    const codec = createTokenCodec(jwt(), { cacheSize: 10 });
    const token = codec.sign('user_1', 'sess_1', new Date(Date.now() + 60_000));
    expect(codec.verify(token)).not.toBeNull();
    vi.setSystemTime(new Date('2026-11-26T12:01:01Z'));
    expect(codec.verify(token)).toBeNull();
    expect(codec.verify(token)).toBeNull(); // and stays refused (verified again, and expired)
  });

  it('a forged or tampered token is never remembered: it is checked (and refused) every time', () => {
    const j = jwt();
    const codec = createTokenCodec(j, { cacheSize: 10 });
    const token = codec.sign('user_1', 'sess_1', new Date(Date.now() + 3600_000));
    const [head, , signature] = token.split('.');
    const body = Buffer.from(JSON.stringify({ sub: 'admin', sid: 'sess_x', exp: 4102444800 })).toString('base64url');
    const forged = `${head}.${body}.${signature}`;
    expect(codec.verify(token)).not.toBeNull();
    for (let i = 0; i < 3; i++) expect(codec.verify(forged)).toBeNull();
    expect(j.calls).toHaveBeenCalledTimes(4);
  });

  it('keeps at most cacheSize tokens (the oldest goes), and none with cacheSize 0', () => {
    const j = jwt();
    const codec = createTokenCodec(j, { cacheSize: 2 });
    const exp = new Date(Date.now() + 3600_000);
    const [t1, t2, t3] = ['s1', 's2', 's3'].map((sid) => codec.sign('user_1', sid, exp)) as [string, string, string];
    for (const t of [t1, t2, t3, t2, t3]) codec.verify(t);
    expect(j.calls).toHaveBeenCalledTimes(3);
    codec.verify(t1); // evicted by t3: verified again
    expect(j.calls).toHaveBeenCalledTimes(4);

    const none = jwt();
    const uncached = createTokenCodec(none, { cacheSize: 0 });
    for (let i = 0; i < 3; i++) uncached.verify(t1);
    expect(none.calls).toHaveBeenCalledTimes(3);
  });
});
