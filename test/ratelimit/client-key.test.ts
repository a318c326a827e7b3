import { describe, expect, it } from 'vitest';
import { clientKey, createIpMatcher } from '../../src/ratelimit/client-key.js';
import { createRateLimiter, requestPath } from '../../src/ratelimit/rate-limiter.js';
import { createMemoryStore } from '../../src/ratelimit/store.js';

describe('client keys', () => {
  it('groups IPv6 by /64 and keeps IPv4 (also IPv4-mapped) per address', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe(clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(clientKey('2001:db8:1:2::1')).not.toBe(clientKey('2001:db8:1:3::1'));
    expect(clientKey('2001:DB8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(clientKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(clientKey('192.0.2.7')).not.toBe(clientKey('192.0.2.8'));
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(clientKey('not an ip')).toBe('raw:not an ip');
  });

  it('matches addresses and CIDRs of both families', () => {
    const m = createIpMatcher(['127.0.0.1', '::1', '10.0.0.0/8']);
    expect(m('127.0.0.1')).toBe(true);
    expect(m('::ffff:127.0.0.1')).toBe(true);
    expect(m('::1')).toBe(true);
    expect(m('10.200.1.1')).toBe(true);
    expect(m('11.0.0.1')).toBe(false);
    expect(m('2001:db8::1')).toBe(false);
    expect(m('garbage')).toBe(false);
  });

  // Regression: a proxy that writes the client with its port ("203.0.113.7:51234", "[2001:db8::1]:443") gave every
  // connection its own raw: bucket, and every IPv6 address its own bucket instead of its /64's.
  it('ignores the port and brackets a proxy may write around the address', () => {
    expect(clientKey('203.0.113.7:51234')).toBe('203.0.113.7');
    expect(clientKey('[2001:db8:1:2::a]')).toBe('2001:db8:1:2::/64');
    expect(clientKey('[2001:db8:1:2::b]:443')).toBe('2001:db8:1:2::/64');
    expect(clientKey('[::ffff:192.0.2.7]:80')).toBe('192.0.2.7');
    expect(clientKey('[not an ip]:80')).toBe('raw:[not an ip]:80');
    const m = createIpMatcher(['10.0.0.0/8', '::1', '2001:db8::1:80']);
    expect(m('10.1.2.3:8080')).toBe(true);
    expect(m('[::1]:9090')).toBe(true);
    expect(m('2001:db8::1:80'), 'a bare IPv6 address keeps its last group').toBe(true);
    expect(m('[2001:db8::1]:80')).toBe(false);
  });
});

describe('rate limiter rules', () => {
  const rules = [
    { prefix: '/auth/', max: 5, window: 60 },
    { prefix: '/auth/login', max: 2, window: 60 },
    { prefix: '/auth/health', max: 0, window: 60 },
  ];

  it('the longest prefix decides; max 0 exempts; later routes fall under their prefix', () => {
    const limiter = createRateLimiter(createMemoryStore(), rules);
    expect(limiter.ruleFor('/auth/login')?.max).toBe(2);
    expect(limiter.ruleFor('/auth/health')?.max).toBe(0);
    expect(limiter.ruleFor('/auth/password/forgot')?.prefix).toBe('/auth/');
    expect(limiter.ruleFor('/metrics')).toBeUndefined();
  });

  it('an exact rule matches its own path only', () => {
    const limiter = createRateLimiter(createMemoryStore(), [
      ...rules,
      { prefix: '/auth/session', max: 0, window: 60, exact: true },
    ]);
    expect(limiter.ruleFor('/auth/session')?.max).toBe(0);
    expect(limiter.ruleFor('/auth/sessions')?.prefix).toBe('/auth/');
    expect(limiter.ruleFor('/auth/session/x')?.prefix).toBe('/auth/');
  });

  it('counts per rule and per /64, and reports the first hit over the limit once', async () => {
    const limiter = createRateLimiter(createMemoryStore(), rules);
    const over: boolean[] = [];
    const hit = (path: string, ip: string) =>
      limiter
        .check(path, ip, (v) => over.push(v.firstOver))
        .then(
          () => 'ok',
          (err: { code: string; details: { retryAfter: number } }) => `${err.code}:${err.details.retryAfter}`,
        );
    expect(await hit('/auth/login', '2001:db8::1')).toBe('ok');
    expect(await hit('/auth/login', '2001:db8::2')).toBe('ok');
    expect(await hit('/auth/login', '2001:db8::ffff')).toBe('RATE_LIMITED:60');
    expect(await hit('/auth/login', '2001:db8::3')).toBe('RATE_LIMITED:60');
    expect(over).toEqual([true, false]);
    expect(await hit('/auth/login', '2001:db8:0:1::1')).toBe('ok'); // another /64
    expect(await hit('/auth/session', '2001:db8::1')).toBe('ok'); // another rule
    for (let i = 0; i < 10; i++) expect(await hit('/auth/health', '192.0.2.1')).toBe('ok');
  });

  it('matches the decoded path, as the router does', () => {
    expect(requestPath('/auth/log%69n?x=1')).toBe('/auth/login');
    expect(requestPath('/auth/%E0%A4%A')).toBe('/auth/%E0%A4%A');
    // Regression: Better Auth resolves dot segments, so /api/auth/./sign-in/email reached sign-in unthrottled.
    expect(requestPath('/api/auth/./sign-in/email')).toBe('/api/auth/sign-in/email');
    expect(requestPath('/api/auth/%2e/sign-in/email')).toBe('/api/auth/sign-in/email');
    expect(requestPath('/api/auth/x/../sign-in/email?a=b')).toBe('/api/auth/sign-in/email');
  });
});
