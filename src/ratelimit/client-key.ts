import ipaddr from 'ipaddr.js';

/**
 * The bucket a client address counts in. IPv6 addresses are grouped by their /64: one subscriber usually holds a
 * whole /64 and can pick any of its 2^64 addresses, so counting per address would not limit anyone. IPv4-mapped IPv6
 * addresses (::ffff:192.0.2.1, what a dual-stack socket reports) count as the IPv4 address.
 */
export function clientKey(ip: string): string {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(ip.replace(/%.*$/, ''));
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
      addr = ipaddr.process(ip.replace(/%.*$/, ''));
    } catch {
      return false;
    }
    return parsed.some(([range, bits]) => addr.kind() === range.kind() && addr.match(range, bits));
  };
}
