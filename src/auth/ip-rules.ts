import { BlockList, isIP, SocketAddress } from 'node:net';

/** Validate `a.b.c.d/n`, `::1/128` or a bare address; returns the canonical text or throws. */
export function parseCidr(text: string): string {
  const [addr = '', bits, extra] = text.trim().split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) throw new Error(`"${text}" is not an IP address or CIDR block`);
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!/^\d+$/.test(bits ?? String(max)) || prefix > max) throw new Error(`"${text}" has a bad prefix length`);
  return `${addr}/${prefix}`;
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr = '', bits = ''] = c.split('/');
    list.addSubnet(addr, Number(bits), isIP(addr) === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

/** Strip the IPv4-mapped prefix Node reports on dual-stack sockets. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The address as the server will see it: made canonical first (IPv6 case and
 * zero runs, an IPv4-mapped address written in hex), then stripped of the
 * IPv4-mapped prefix as every accepted socket's address is. The other order
 * stored `::FFFF:192.0.2.1` as a ban that no connection ever matched.
 * null: not an IP address.
 */
export function canonicalAddress(text: string): string | null {
  const address = text.trim();
  const family = isIP(address);
  if (family === 0) return null;
  return plainAddress(new SocketAddress({ address, family: family === 6 ? 'ipv6' : 'ipv4' }).address);
}

/** Deny wins; a non-empty allow list admits only what it names. */
export function addressAllowed(address: string, allow: readonly string[], deny: readonly string[]): boolean {
  const ip = plainAddress(address);
  const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
  if (deny.length > 0 && blockList(deny).check(ip, type)) return false;
  return allow.length === 0 || blockList(allow).check(ip, type);
}

/** A matcher for a fixed list of CIDR blocks, built once (the defender's allow list, checked at every accept). */
export function cidrMatcher(cidrs: readonly string[]): (address: string) => boolean {
  if (cidrs.length === 0) return () => false;
  const list = blockList(cidrs);
  return (address) => {
    const ip = plainAddress(address);
    return list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
  };
}
