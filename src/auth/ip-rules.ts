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
 * at a time, it is never banned. Except where a network is no customer's
 * (see carried).
 */
export function sourceOf(address: string, ipv6Prefix: number): string {
  const canonical = canonicalAddress(address);
  if (canonical === null || ipv6Prefix >= 128 || isIP(canonical) !== 6) return canonical ?? address;
  return carried(ipv6Bytes(canonical)) ?? networkOf(canonical, ipv6Prefix);
}

const v4 = (b: Buffer, at: number, flip = 0): string => Array.from(b.subarray(at, at + 4), (x) => x ^ flip).join('.');

/**
 * The source of an IPv6 address whose network is shared by unrelated
 * clients or stands for one host: the IPv4 client a translator or tunnel
 * carries in it (NAT64 64:ff9b::/96, its local-use 64:ff9b:1::/48 and SIIT
 * ::ffff:0:0:0/96, whose /64 is the whole IPv4 internet; 6to4 2002::/16,
 * one IPv4 host with 2^80 addresses; Teredo 2001::/32, every client of one
 * relay in a /64), or the address itself (::/96, loopback and
 * IPv4-compatible; fe80::/10, link-local, where every neighbour shares
 * fe80::/64). Null: an ordinary address.
 */
function carried(b: Buffer): string | null {
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  if (b.readUInt32BE(0) === 0x0064ff9b && zeros(4, 12)) return v4(b, 12);
  // RFC 6052 with a /48 prefix: the IPv4 address around the reserved octet 8.
  if (b.readUInt32BE(0) === 0x0064ff9b && b.readUInt16BE(4) === 1) return [b[6], b[7], b[9], b[10]].join('.');
  if (zeros(0, 8) && b.readUInt16BE(8) === 0xffff && zeros(10, 12)) return v4(b, 12);
  if (b.readUInt16BE(0) === 0x2002) return v4(b, 2);
  if (b.readUInt32BE(0) === 0x20010000) return v4(b, 12, 0xff);
  if (zeros(0, 12) || (b.readUInt16BE(0) & 0xffc0) === 0xfe80) return new SocketAddress({ address: bytesText(b), family: 'ipv6' }).address;
  return null;
}

/** Sixteen bytes as an IPv6 address's eight groups, not yet canonical (canonicalAddress makes it so). */
export function bytesText(b: Buffer): string {
  return Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':');
}

function networkOf(address: string, prefix: number): string {
  const bytes = ipv6Bytes(address);
  for (let bit = prefix; bit < 128; bit++) bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  return `${new SocketAddress({ address: bytesText(bytes), family: 'ipv6' }).address}/${prefix}`;
}

/** What to tell someone whose ban target banTarget refused. */
export function notBanTarget(text: string, ipv6Prefix: number): string {
  return `"${text}" is not an IP address${ipv6Prefix < 128 ? ` or an IPv6 network /${ipv6Prefix}` : ''}`;
}

/**
 * An address or network an administrator may ban: any address, or an IPv6
 * network of exactly `ipv6Prefix` bits (what the defender bans), written
 * canonically; null otherwise. A network of another size would match no
 * client, since each is looked up as its address and its network only; but
 * one banned before limits.ipv6Prefix changed must still be lifted, so
 * `anySize` (for lifting) takes an IPv6 network of any size from 1 to 127.
 */
export function banTarget(text: string, ipv6Prefix: number, anySize = false): string | null {
  const [addr = '', bits, extra] = text.trim().split('/');
  if (bits === undefined) return canonicalAddress(addr);
  const size = Number(bits);
  if (extra !== undefined || !/^\d{1,3}$/.test(bits) || isIP(addr) !== 6) return null;
  if (anySize ? size < 1 || size > 127 : size !== ipv6Prefix || ipv6Prefix >= 128) return null;
  const address = canonicalAddress(addr) as string;
  if (isIP(address) !== 6) return null;
  const network = networkOf(address, size);
  // Clients there count as the IPv4 address they carry, or alone (carried): a ban of the network holds none.
  return anySize || !heldByNoOne(network) ? network : null;
}

/** A network whose clients never count as it (carried), such as 2002:c000:201::/64 or fe80::/64. */
function heldByNoOne(network: string): boolean {
  return carried(ipv6Bytes(network.split('/')[0] as string)) !== null;
}

/** The stored bans of IPv6 networks no look-up matches: of another size than `ipv6Prefix`, or in a range whose clients count otherwise. */
export function strayNetworks(addresses: readonly string[], ipv6Prefix: number): string[] {
  return addresses.filter((a) => a.includes('/') && (a.split('/')[1] !== String(ipv6Prefix) || heldByNoOne(a)));
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

/** Ranges whose addresses are not on the internet: loopback, link-local, RFC 1918, carrier-grade NAT, unique local. */
const NOT_PUBLIC = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '100.64.0.0/10', '::1/128', 'fc00::/7', 'fe80::/10'];

/**
 * The blocks of `cidrs` wider than `widest` that hold internet addresses: a
 * balancer pool is a few addresses, or a private network, so a trusted proxy
 * range past that lets the public name any address (0.0.0.0/0, or the same
 * split in two /1s). An IPv6 range is judged as IPv4 too for the IPv4-mapped
 * addresses it holds (see mappedPart).
 */
export function widePublicRanges(cidrs: readonly string[], widest: { ipv4: number; ipv6: number }): string[] {
  return cidrs.filter((cidr) => {
    const [addr = '', bits = ''] = cidr.split('/');
    const prefix = Number(bits);
    if (isIP(addr) !== 6) return widePublic(addr, prefix, 'ipv4', widest.ipv4);
    const mapped = mappedPart(addr, prefix);
    return widePublic(addr, prefix, 'ipv6', widest.ipv6) || (mapped !== null && widePublic(mapped.addr, mapped.prefix, 'ipv4', widest.ipv4));
  });
}

function widePublic(addr: string, prefix: number, type: 'ipv4' | 'ipv6', widest: number): boolean {
  if (prefix >= widest) return false;
  const inside = NOT_PUBLIC.some((block) => {
    const [net = '', netBits = ''] = block.split('/');
    return (isIP(net) === 6 ? 'ipv6' : 'ipv4') === type && prefix >= Number(netBits) && blockList([block]).check(addr, type);
  });
  return !inside;
}

/**
 * The IPv4 block an IPv6 range holds as IPv4-mapped addresses (::ffff:0:0/96),
 * null: none. Node's BlockList, the matcher of trusted proxies (cidrMatcher),
 * matches an IPv4 client against them: ::ffff:0:0/96, or any range around it
 * (::/80), trusts every IPv4 address, yet passed for a pool by its prefix
 * (found by an adversarial review).
 */
function mappedPart(addr: string, prefix: number): { addr: string; prefix: number } | null {
  if (prefix <= 96) return blockList([`${addr}/${prefix}`]).check('::ffff:0:0', 'ipv6') ? { addr: '0.0.0.0', prefix: 0 } : null;
  const b = ipv6Bytes(addr);
  return b.subarray(0, 10).every((x) => x === 0) && b.readUInt16BE(10) === 0xffff ? { addr: v4(b, 12), prefix: prefix - 96 } : null;
}
