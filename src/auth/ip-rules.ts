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

/** The sixteen bytes of an IPv6 address (valid, as isIP says), a dotted IPv4 tail (::1.2.3.4) included. */
function ipv6Bytes(address: string): Buffer {
  const dotted = /[\d.]+$/.exec(address);
  const quad = dotted?.[0].includes('.') ? dotted[0].split('.').map(Number) : null;
  const text = quad && dotted ? `${address.slice(0, dotted.index)}${(quad[0]! * 256 + quad[1]!).toString(16)}:${(quad[2]! * 256 + quad[3]!).toString(16)}` : address;
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
}

/**
 * What a client is counted (maxSessionsPerIp), scored and banned as: an
 * IPv4 address itself, an IPv6 address as its network of `ipv6Prefix` bits
 * (`2001:db8:1:2::/64`). One customer's line or host is given a whole /64,
 * and can take a fresh address from it for every try: counted one address
 * at a time, it is never banned.
 */
export function sourceOf(address: string, ipv6Prefix: number): string {
  const canonical = canonicalAddress(address);
  if (canonical === null || ipv6Prefix >= 128 || isIP(canonical) !== 6) return canonical ?? address;
  return networkOf(canonical, ipv6Prefix);
}

function networkOf(address: string, prefix: number): string {
  const bytes = ipv6Bytes(address);
  for (let bit = prefix; bit < 128; bit++) bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  return `${new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address}/${prefix}`;
}

/** What to tell someone whose ban target banTarget refused. */
export function notBanTarget(text: string, ipv6Prefix: number): string {
  return `"${text}" is not an IP address${ipv6Prefix < 128 ? ` or an IPv6 network /${ipv6Prefix}` : ''}`;
}

/**
 * An address or network an administrator may ban: any address, or an IPv6
 * network of exactly `ipv6Prefix` bits (what the defender bans), written
 * canonically; null otherwise. A network of another size would match no
 * client, since each is looked up as its address and its network only.
 */
export function banTarget(text: string, ipv6Prefix: number): string | null {
  const [addr = '', bits, extra] = text.trim().split('/');
  if (bits === undefined) return canonicalAddress(addr);
  if (extra !== undefined || !/^\d{1,3}$/.test(bits) || Number(bits) !== ipv6Prefix || ipv6Prefix >= 128 || isIP(addr) !== 6) return null;
  const address = canonicalAddress(addr) as string;
  return isIP(address) === 6 ? networkOf(address, ipv6Prefix) : null;
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
