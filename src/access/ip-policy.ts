import ipaddr from 'ipaddr.js';
import { bareAddress } from '../ratelimit/client-key.js';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128); null when it is neither. */
export function parseCidr(text: string): Range | null {
  const value = text.trim();
  // Dotted quads only: ipaddr.js also reads legacy forms ("10.0.0", "0x0a.1") that nobody means in an allow list.
  const address = value.split('/', 1)[0] ?? '';
  if (!address.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(address)) return null;
  try {
    if (value.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(value);
      const net = normalise(addr);
      if (net.kind() === addr.kind()) return [net, bits];
      // An IPv4-mapped range compares as IPv4, so its prefix must lie inside ::ffff:0:0/96; a shorter one would
      // become a negative IPv4 length, which ipaddr.js matches against every address.
      return bits >= 96 ? [net, bits - 96] : null;
    }
    if (!ipaddr.isValid(value)) return null;
    const addr = normalise(ipaddr.parse(value));
    return [addr, addr.kind() === 'ipv4' ? 32 : 128];
  } catch {
    return null;
  }
}

/** The first entry that is not a valid CIDR or address, or null when all are. */
export function invalidCidr(list: readonly string[]): string | null {
  return list.find((entry) => parseCidr(entry) === null) ?? null;
}

/** IPv4-mapped IPv6 (::ffff:1.2.3.4, what a dual-stack socket reports) compares as IPv4. */
function normalise(addr: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  return addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()
    ? (addr as ipaddr.IPv6).toIPv4Address()
    : addr;
}

function parseAddress(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    return normalise(ipaddr.parse(bareAddress(ip)));
  } catch {
    return null;
  }
}

function inAny(addr: ipaddr.IPv4 | ipaddr.IPv6, ranges: readonly Range[]): boolean {
  return ranges.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net as never, bits));
}

function parseAll(list: readonly string[]): Range[] {
  return list.map(parseCidr).filter((r): r is Range => r !== null);
}

export type IpRefusal = 'global_deny' | 'global_allow' | 'user_allow' | 'unparseable';

export interface IpPolicy {
  /** The global lists only (cheap, no database): why `ip` is refused, or null. */
  refuseGlobally(ip: string | undefined): IpRefusal | null;
  /** The global lists and a user's own allow list (null or empty: no per-user restriction). */
  refuse(ip: string | undefined, userAllowlist: readonly string[] | null | undefined): IpRefusal | null;
  /** Whether any restriction exists at all (lets callers skip work when none is configured). */
  readonly active: boolean;
}

/**
 * Global allow and deny lists from config, and the per-user allow list. Deny wins; a non-empty allow list admits only
 * its ranges. An address that does not parse is refused only when some restriction would need it. An unknown address
 * (a caller that could not tell, e.g. a direct Authenticator call without one) passes the lists: every channel passes
 * the socket's address, so this only concerns in-process callers.
 */
export function createIpPolicy(lists: { allow: readonly string[]; deny: readonly string[] }): IpPolicy {
  const allow = parseAll(lists.allow);
  const deny = parseAll(lists.deny);
  const active = allow.length > 0 || deny.length > 0;

  const refuseGlobally = (ip: string | undefined): IpRefusal | null => {
    if (!active || ip === undefined) return null;
    const addr = parseAddress(ip);
    if (!addr) return 'unparseable';
    if (inAny(addr, deny)) return 'global_deny';
    if (allow.length > 0 && !inAny(addr, allow)) return 'global_allow';
    return null;
  };

  return {
    active,
    refuseGlobally,
    refuse(ip, userAllowlist) {
      const global = refuseGlobally(ip);
      if (global) return global;
      if (!userAllowlist || userAllowlist.length === 0 || ip === undefined) return null;
      const addr = parseAddress(ip);
      if (!addr) return 'unparseable';
      return inAny(addr, parseAll(userAllowlist)) ? null : 'user_allow';
    },
  };
}
