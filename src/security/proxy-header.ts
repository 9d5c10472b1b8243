import { createRequire } from 'node:module';
import { isIP, type Socket } from 'node:net';
import type * as ProxyProtocolJs from 'proxy-protocol-js';
import type { V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import type { Logger } from 'pino';
import { bytesText, canonicalAddress, cidrMatcher, plainAddress } from '../auth/ip-rules.js';

export type ProxyMode = 'off' | 'v1' | 'v2' | 'optional';

/** The spec's longest v1 line, CRLF included. */
const V1_MAX = 107;
/** The spec's bound for v2 (16-byte preamble, addresses and TLVs): a receiver need never buffer more. */
const V2_MAX = 536;
const V1_SIGNATURE = Buffer.from('PROXY ');
const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'binary');
/** A balancer sends its header with the connection: a peer this slow is broken or hostile, and must not hold the socket. */
export const HEADER_TIMEOUT_MS = 3000;
/**
 * How long a connection from a balancer's own host is watched for a header
 * (see ProxyHeaders.hostOrForwarded): the balancer writes one as soon as its
 * connection to us is made, whatever its client does or sends, so it comes
 * with the connection, not a round trip after it.
 */
const FORWARDED_HEADER_MS = 100;
const REFUSAL_LOG_MS = 10_000;

/** What the first bytes of a connection say, as far as they go. */
export type HeaderParse =
  /** Not enough bytes yet to decide. */
  | { kind: 'incomplete' }
  /** Not a PROXY header at all. */
  | { kind: 'absent' }
  | { kind: 'invalid'; reason: string }
  /** A header carrying the client's address and port; `length` bytes of it precede the client's own. */
  | { kind: 'proxied'; version: 1 | 2; address: string; port: number; length: number }
  /** A header without a client (v2 LOCAL, v1 UNKNOWN): the balancer's own health check. */
  | { kind: 'local'; version: 1 | 2; length: number };

/**
 * proxy-protocol-js, loaded where headers can come: from a trusted proxy
 * (ProxyHeaders loads it at start then). A server that trusts none, as most
 * do, never loads its 18 files (about 0.02 s of CPU at each start).
 */
let library: typeof ProxyProtocolJs | undefined;
const proxyProtocolJs = (): typeof ProxyProtocolJs => (library ??= createRequire(import.meta.url)('proxy-protocol-js') as typeof ProxyProtocolJs);

function startsWith(buf: Buffer, signature: Buffer): 'yes' | 'maybe' | 'no' {
  const n = Math.min(buf.length, signature.length);
  if (!buf.subarray(0, n).equals(signature.subarray(0, n))) return 'no';
  return n === signature.length ? 'yes' : 'maybe';
}

/** Pure: the header at the start of `buf`, parsed by proxy-protocol-js once it is whole. */
export function parseProxyHeader(buf: Buffer): HeaderParse {
  const v1 = startsWith(buf, V1_SIGNATURE);
  const v2 = startsWith(buf, V2_SIGNATURE);
  if (v1 === 'yes') return parseV1(buf);
  if (v2 === 'yes') return parseV2(buf);
  return v1 === 'maybe' || v2 === 'maybe' ? { kind: 'incomplete' } : { kind: 'absent' };
}

function parseV1(buf: Buffer): HeaderParse {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { kind: 'invalid', reason: 'v1 header too long' } : { kind: 'incomplete' };
  const length = end + 2;
  const line = buf.subarray(0, length).toString('latin1');
  if (line.startsWith('PROXY UNKNOWN')) return { kind: 'local', version: 1, length };
  let header: V1ProxyProtocol;
  try {
    header = proxyProtocolJs().V1ProxyProtocol.parse(line);
  } catch {
    return { kind: 'invalid', reason: 'malformed v1 header' };
  }
  // The library's pattern takes any word for an address and any digits for a port: check each is one, of the
  // family announced. Only the source is used, but a header with a destination no connection has is not a
  // balancer's: the specification asks both ends to be valid.
  const family = header.inetProtocol === 'TCP4' ? 4 : 6;
  const address = header.source.ipAddress;
  for (const [end, { ipAddress, port }] of [['source', header.source], ['destination', header.destination]] as const) {
    if (isIP(ipAddress) !== family) return { kind: 'invalid', reason: `bad v1 ${end} address` };
    if (!(port <= 65_535)) return { kind: 'invalid', reason: `bad v1 ${end} port` };
  }
  return { kind: 'proxied', version: 1, address: canonicalAddress(address) as string, port: header.source.port, length };
}

function parseV2(buf: Buffer): HeaderParse {
  if (buf.length < 16) return { kind: 'incomplete' };
  const length = 16 + buf.readUInt16BE(14);
  if (length > V2_MAX) return { kind: 'invalid', reason: 'v2 header too long' };
  if (buf.length < length) return { kind: 'incomplete' };
  let header: V2ProxyProtocol;
  try {
    header = proxyProtocolJs().V2ProxyProtocol.parse(new Uint8Array(buf.subarray(0, length)));
  } catch {
    return { kind: 'invalid', reason: 'malformed v2 header' };
  }
  if (header.command === proxyProtocolJs().Command.LOCAL) return { kind: 'local', version: 2, length };
  const source = v2Source(header);
  return source === null ? { kind: 'invalid', reason: 'v2 header without an IP source' } : { kind: 'proxied', version: 2, ...source, length };
}

function v2Source(header: V2ProxyProtocol): { address: string; port: number } | null {
  const { proxyAddress } = header;
  const { IPv4ProxyAddress, IPv6ProxyAddress } = proxyProtocolJs();
  if (proxyAddress instanceof IPv4ProxyAddress) return { address: proxyAddress.sourceAddress.address.join('.'), port: proxyAddress.sourcePort };
  if (!(proxyAddress instanceof IPv6ProxyAddress)) return null;
  return { address: canonicalAddress(bytesText(Buffer.from(proxyAddress.sourceAddress.address))) as string, port: proxyAddress.sourcePort };
}

/**
 * The connection's client, or null when it has been closed. The port goes
 * with the address into the records: behind a balancer the socket's own is
 * the balancer's, and address and port are what names a subscriber behind
 * carrier-grade NAT.
 */
/** A client's address and port; `proxy`: the version of the PROXY header they came in (none: the socket's own peer). */
export type Origin = { address: string; port: number; proxy?: 1 | 2 } | null;

/**
 * The one place a connection's client address comes from, for every
 * front-end and the FTP data connections: the socket's own peer, or, from a
 * trusted balancer, the address in its PROXY header. The header is read
 * before anything else sees the socket (at most V2_MAX bytes, within
 * HEADER_TIMEOUT_MS), and the bytes after it are handed back to the socket
 * untouched.
 */
export class ProxyHeaders {
  private readonly trusted: (address: string) => boolean;
  private refused = 0;
  private warnedAt = 0;

  constructor(
    trustedProxies: readonly string[],
    private readonly log: Logger,
  ) {
    this.trusted = cidrMatcher(trustedProxies);
    // Headers are read from trusted proxies only: a library that will not load fails the start, not a connection.
    if (trustedProxies.length > 0) proxyProtocolJs();
  }

  /** Is the socket's own peer a trusted balancer? */
  trusts(socket: Socket): boolean {
    return this.trusted(plainAddress(socket.remoteAddress ?? ''));
  }

  async origin(socket: Socket, mode: ProxyMode): Promise<Origin> {
    const peer = plainAddress(socket.remoteAddress ?? '');
    const direct = { address: peer, port: socket.remotePort ?? 0 };
    if (mode === 'off') return direct;
    if (!this.trusted(peer)) {
      // Served as it is under optional; under v1/v2 everything must come through the balancer.
      if (mode === 'optional') return direct;
      return this.refuse(socket, peer, 'not a trusted proxy');
    }
    const header = await readHeader(socket, HEADER_TIMEOUT_MS);
    if (header.kind === 'absent' && mode === 'optional') return direct;
    if (header.kind === 'local') {
      // The balancer's health check: nobody to serve, nothing to score.
      socket.destroy();
      return null;
    }
    if (header.kind !== 'proxied') return this.refuse(socket, peer, header.kind === 'invalid' ? header.reason : 'no PROXY header');
    if (mode !== 'optional' && `v${header.version}` !== mode) return this.refuse(socket, peer, `PROXY v${header.version} header, ${mode} expected`);
    return { address: headerClient(header.address, peer), port: header.port, proxy: header.version };
  }

  /**
   * The client of a connection from a trusted balancer's address that may be
   * a client on that host itself, which sends no header (an FTP data
   * connection of such a client, see Guest.dataOrigin), or one the balancer
   * forwarded from anyone, which begins with its header: the address that
   * header names when one comes within FORWARDED_HEADER_MS, else the
   * socket's own peer. Every byte is handed back, a header's too: the host's
   * client may send bytes that read as one (an upload of a PROXY line), and
   * the caller takes a connection naming another client for none of its own.
   * Found by an adversarial review: read without a header, a connection the
   * balancer forwarded came from the host's address, took such a client's
   * passive port, and was sent its download. A header without a client (a
   * health check) is the balancer's own connection, no client's: closed, as
   * origin() closes it, rather than taken for the host's client.
   */
  async hostOrForwarded(socket: Socket): Promise<Origin> {
    const header = await readHeader(socket, FORWARDED_HEADER_MS, 'all');
    const peer = plainAddress(socket.remoteAddress ?? '');
    if (header.kind === 'proxied') return { address: headerClient(header.address, peer), port: header.port, proxy: header.version };
    if (header.kind === 'local') {
      socket.destroy();
      return null;
    }
    return { address: peer, port: socket.remotePort ?? 0 };
  }

  /** Logged in sums at most every REFUSAL_LOG_MS: a flood of bad connections cannot fill the log. */
  private refuse(socket: Socket, peer: string, reason: string): null {
    socket.destroy();
    this.refused++;
    const now = Date.now();
    if (now - this.warnedAt >= REFUSAL_LOG_MS) {
      this.log.warn({ ip: peer, reason, refused: this.refused }, 'PROXY protocol: connection refused');
      this.refused = 0;
      this.warnedAt = now;
    }
    return null;
  }
}

const loopback = cidrMatcher(['127.0.0.0/8', '::1/128']);

/**
 * Pure: the client a trusted balancer's header names, as this host must take
 * it. A loopback address there is the balancer's own host (a local user's
 * connection, an ssh -L tunnel, a forwarder there), not this one, unless the
 * balancer is on loopback itself: its client is then the balancer's address.
 * Taken as it stood, it passed for a client on this host (found by an
 * adversarial review): an account allowed from 127.0.0.1 only logged in from
 * the balancer's host, and PORT 127,0,0,1,... had the server connect to its
 * own loopback services and send them a file.
 */
export function headerClient(address: string, peer: string): string {
  return loopback(address) && !loopback(peer) ? peer : address;
}

/**
 * Reads until parseProxyHeader decides (its limits bound the bytes held),
 * then unshifts whatever follows the header. A peer that sends nothing within
 * the timeout has sent no header ('absent'); one that stops halfway, an
 * invalid one. With `handBack` 'all', every byte read is handed back, the
 * header's too, and the first bytes decide: a header must be whole in them.
 */
function readHeader(socket: Socket, timeoutMs: number, handBack: 'after' | 'all' = 'after'): Promise<HeaderParse> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const finish = (result: HeaderParse, rest: Buffer): void => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('close', onClose);
      if (rest.length > 0) socket.unshift(rest);
      resolve(result);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, chunk]);
        const result = parseProxyHeader(buf);
        if (result.kind === 'incomplete') continue;
        const used = handBack === 'after' && (result.kind === 'proxied' || result.kind === 'local') ? result.length : 0;
        return finish(result, buf.subarray(used));
      }
      // A balancer writes its header at once, whole: what came first is no beginning of one. Decided now, before the
      // stream's end is emitted, after which nothing can be handed back (an upload of "\r\n" and its FIN lost them).
      if (handBack === 'all') finish({ kind: 'absent' }, buf);
    };
    const onClose = (): void => finish({ kind: 'invalid', reason: 'closed before the header' }, Buffer.alloc(0));
    const timer = setTimeout(() => finish(buf.length === 0 ? { kind: 'absent' } : { kind: 'invalid', reason: 'header timeout' }, buf), timeoutMs);
    timer.unref();
    socket.on('readable', onReadable);
    socket.once('close', onClose);
  });
}
