/**
 * Regression: a TOTP code was accepted more than once per account when the 2FA challenge's signature was re-spelt.
 * better-call decodes the base64 signature with atob(), which ignores the 2 unused low bits of its 43rd character, so
 * four spellings are one valid signature; the gateway compared the text, so for the other three it skipped the code's
 * once-per-account claim, and Better Auth's verifyTOTP (which does not read last_used_step) took the used code again.
 */
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** The same challenge with its signature's last significant character changed in its 2 unused bits. */
function respelt(challenge: string): string {
  const dot = challenge.lastIndexOf('.');
  const sig = challenge.slice(dot + 1);
  const c = sig[42] as string;
  const v = B64.indexOf(c);
  const alt = B64[(v & ~3) | ((v + 1) & 3)] as string;
  const out = `${challenge.slice(0, dot + 1)}${sig.slice(0, 42)}${alt}${sig.slice(43)}`;
  expect(Buffer.from(out.slice(dot + 1), 'base64')).toEqual(Buffer.from(sig, 'base64'));
  expect(out).not.toBe(challenge);
  return out;
}

describe('a TOTP code is taken once per account, however the challenge signature is spelt', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());
  const post = (url: string, payload: object, token?: string) =>
    t.app.inject({ method: 'POST', url, payload, headers: token ? { authorization: `Bearer ${token}` } : {} });

  async function enrolled() {
    const user = await registerUser(t.app);
    const res = await post('/auth/2fa/enable', { password: user.password }, user.token);
    const totp = OTPAuth.URI.parse(res.json().otpauthUri) as OTPAuth.TOTP;
    expect((await post('/auth/2fa/confirm', { code: totp.generate() }, user.token)).statusCode).toBe(200);
    return { user, totp };
  }
  const nextCode = (totp: OTPAuth.TOTP) => totp.generate({ timestamp: Date.now() + 30_000 });
  const challenge = async (user: { email: string; password: string }) =>
    (await post('/auth/login', { email: user.email, password: user.password })).json().challengeToken as string;

  it('/auth/2fa/verify: the code that completed one sign-in completes no other, re-spelt or not', async () => {
    const { user, totp } = await enrolled();
    const code = nextCode(totp);
    const first = await post('/auth/2fa/verify', { challengeToken: await challenge(user), code });
    expect(first.statusCode).toBe(200);
    // Control: the plain replay is refused, as documented.
    const plain = await post('/auth/2fa/verify', { challengeToken: await challenge(user), code });
    expect(plain.json().error?.code).toBe('TWO_FACTOR_INVALID_CODE');
    // The same replay with the signature re-spelt.
    const replay = await post('/auth/2fa/verify', { challengeToken: respelt(await challenge(user)), code });
    expect(replay.statusCode).toBe(401);
    expect(replay.json().error.code).toBe('TWO_FACTOR_INVALID_CODE');
  });

  it('parallel: one code on five re-spelt challenges gives exactly one session', async () => {
    const { user, totp } = await enrolled();
    const code = nextCode(totp);
    const challenges = await Promise.all(Array.from({ length: 5 }, () => challenge(user)));
    const results = await Promise.all(
      challenges.map((c) => post('/auth/2fa/verify', { challengeToken: respelt(c), code })),
    );
    const ok = results.filter((r) => r.statusCode === 200).length;
    expect(ok).toBe(1);
  });

  it("Better Auth's /api/auth/two-factor/verify-totp refuses the used code under a re-spelt cookie too", async () => {
    const { user, totp } = await enrolled();
    const code = nextCode(totp);
    expect((await post('/auth/2fa/verify', { challengeToken: await challenge(user), code })).statusCode).toBe(200);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'content-type': 'application/json', origin: 'http://localhost:3000' },
      payload: JSON.stringify({ email: user.email, password: user.password }),
    });
    const cookie = ([] as string[])
      .concat(res.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0] as string)
      .find((c) => c.startsWith('better-auth.two_factor=')) as string;
    const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
    const replay = await t.app.inject({
      method: 'POST',
      url: '/api/auth/two-factor/verify-totp',
      headers: {
        cookie: `better-auth.two_factor=${encodeURIComponent(respelt(value))}`,
        'content-type': 'application/json',
        origin: 'http://localhost:3000',
      },
      payload: JSON.stringify({ code }),
    });
    expect(replay.statusCode).toBe(401);
  });
});
