import ipaddr from 'ipaddr.js';

/**
 * The address without the port or brackets some trusted proxies write around it: "203.0.113.7:51234" (Azure
 * Application Gateway), "[2001:db8::1]" or "[2001:db8::1]:443" (RFC 7239). Kept, a source port would make every
 * connection a new client. Only a dotted quad loses a ":port": in a bare IPv6 address the last group is no port.
 */
export function bareAddress(ip: string): string {
  const value = ip.trim();
  const bracketed = /^\[(.*)\](?::\d+)?$/.exec(value);
  if (bracketed) return bracketed[1] ?? '';
  return value.replace(/^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/, '$1');
}

/**
 * The bucket a client address counts in. IPv6 addresses are grouped by their /64: one subscriber usually holds a
 * whole /64 and can pick any of its 2^64 addresses, so counting per address would not limit anyone. IPv4-mapped IPv6
 * addresses (::ffff:192.0.2.1, what a dual-stack socket reports) count as the IPv4 address.
 */
export function clientKey(ip: string): string {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(bareAddress(ip).replace(/%.*$/, ''));
  } catch {
    return `raw:${ip.slice(0, 64)}`;
  }
  if (addr.kind() === 'ipv6') {
    const v6 = addr as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
    const parts = v6.parts.slice(0, 4).map((p) => p.toString(16));
    return `${parts.join(':')}::/64`;
  }
  return addr.toString();
}

/** Whether `ip` is in one of `ranges` (addresses or CIDRs; an IPv4-mapped address matches its IPv4 ranges). */
export function createIpMatcher(ranges: readonly string[]): (ip: string) => boolean {
  const parsed = ranges.map((r) =>
    r.includes('/') ? ipaddr.parseCIDR(r) : ipaddr.parseCIDR(`${r}/${r.includes(':') ? 128 : 32}`),
  );
  return (ip) => {
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = ipaddr.process(bareAddress(ip).replace(/%.*$/, ''));
    } catch {
      return false;
    }
    return parsed.some(([range, bits]) => addr.kind() === range.kind() && addr.match(range, bits));
  };
}
