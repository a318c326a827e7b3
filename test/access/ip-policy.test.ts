import { describe, expect, it } from 'vitest';
import { createIpPolicy, invalidCidr, parseCidr } from '../../src/access/ip-policy.js';

describe('IP policy (CIDR lists, IPv4 and IPv6)', () => {
  it('parses CIDRs and bare addresses of both families, and nothing else', () => {
    for (const ok of ['10.0.0.0/8', '203.0.113.7', '2001:db8::/32', '::1', '::ffff:10.0.0.0/104', ' 192.0.2.0/24 ']) {
      expect(parseCidr(ok), ok).not.toBeNull();
    }
    for (const bad of ['', '10.0.0.0/33', '2001:db8::/129', 'example.com', '10.0.0', '1.2.3.4/-1', '::g']) {
      expect(parseCidr(bad), bad).toBeNull();
    }
    // Regression: an IPv4-mapped prefix under /96 became IPv4 with a negative length, which matches every address.
    expect(parseCidr('::ffff:10.0.0.0/96'), '::ffff:10.0.0.0/96').not.toBeNull();
    for (const bad of ['::ffff:10.0.0.0/95', '::ffff:10.0.0.0/64', '::ffff:0:0/0']) {
      expect(parseCidr(bad), bad).toBeNull();
    }
    expect(invalidCidr(['10.0.0.0/8', 'nope', '::1'])).toBe('nope');
    expect(invalidCidr([])).toBeNull();
  });

  it('deny wins over allow; a non-empty allow list admits only its ranges', () => {
    const policy = createIpPolicy({ allow: ['10.0.0.0/8', '2001:db8::/32'], deny: ['10.6.6.0/24'] });
    expect(policy.refuseGlobally('10.1.2.3')).toBeNull();
    expect(policy.refuseGlobally('2001:db8::42')).toBeNull();
    expect(policy.refuseGlobally('10.6.6.6')).toBe('global_deny');
    expect(policy.refuseGlobally('192.0.2.1')).toBe('global_allow');
    expect(policy.refuseGlobally('2001:db9::1')).toBe('global_allow');
    expect(policy.refuseGlobally('not an ip')).toBe('unparseable');
  });

  it('compares IPv4-mapped IPv6 addresses (dual-stack sockets) as IPv4', () => {
    const policy = createIpPolicy({ allow: [], deny: ['203.0.113.0/24'] });
    expect(policy.refuseGlobally('::ffff:203.0.113.9')).toBe('global_deny');
    expect(policy.refuseGlobally('::ffff:198.51.100.1')).toBeNull();
    const mapped = createIpPolicy({ allow: [], deny: ['::ffff:203.0.113.0/120'] });
    expect(mapped.refuseGlobally('203.0.113.9')).toBe('global_deny');
  });

  // Regression: a proxy that writes the client with its port made the address unparseable, so every list refused it.
  it('reads an address a proxy wrote with a port or in brackets', () => {
    const policy = createIpPolicy({ allow: ['10.0.0.0/8', '2001:db8::/32'], deny: ['10.6.6.0/24'] });
    expect(policy.refuseGlobally('10.1.2.3:51234')).toBeNull();
    expect(policy.refuseGlobally('10.6.6.6:51234')).toBe('global_deny');
    expect(policy.refuseGlobally('[2001:db8::42]')).toBeNull();
    expect(policy.refuseGlobally('[2001:db8::42]:443')).toBeNull();
    expect(policy.refuseGlobally('[2001:db9::1]:443')).toBe('global_allow');
    expect(policy.refuseGlobally('[10.1.2.3:80')).toBe('unparseable');
    expect(policy.refuse('10.1.2.3:80', ['10.1.2.0/24'])).toBeNull();
    expect(policy.refuse('10.1.3.3:80', ['10.1.2.0/24'])).toBe('user_allow');
  });

  it('applies a user allow list after the global lists; empty or null means no per-user restriction', () => {
    const policy = createIpPolicy({ allow: [], deny: ['192.0.2.66'] });
    expect(policy.active).toBe(true);
    expect(policy.refuse('198.51.100.7', ['198.51.100.0/24'])).toBeNull();
    expect(policy.refuse('198.51.101.7', ['198.51.100.0/24'])).toBe('user_allow');
    expect(policy.refuse('192.0.2.66', ['192.0.2.0/24'])).toBe('global_deny');
    expect(policy.refuse('198.51.101.7', [])).toBeNull();
    expect(policy.refuse('198.51.101.7', null)).toBeNull();
    const none = createIpPolicy({ allow: [], deny: [] });
    expect(none.active).toBe(false);
    expect(none.refuse('2001:db8::1', ['::1'])).toBe('user_allow');
    expect(none.refuseGlobally('anything')).toBeNull();
  });
});
