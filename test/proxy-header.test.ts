import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Command, IPv4Address, IPv4ProxyAddress, IPv6Address, IPv6ProxyAddress, TransportProtocol, UnspecProxyAddress, V2ProxyProtocol } from 'proxy-protocol-js';
import { HEADER_TIMEOUT_MS, ProxyHeaders, headerClient, parseProxyHeader, type HeaderParse, type Origin, type ProxyMode } from '../src/security/proxy-header.js';

const v2 = (command: Command, address: IPv4ProxyAddress | IPv6ProxyAddress | UnspecProxyAddress): Buffer =>
  Buffer.from(new V2ProxyProtocol(command, command === Command.LOCAL ? TransportProtocol.UNSPEC : TransportProtocol.STREAM, address).build());
const V2_IPV4 = v2(Command.PROXY, new IPv4ProxyAddress(IPv4Address.createFrom([192, 0, 2, 7]), 40000, IPv4Address.createFrom([10, 0, 0, 1]), 2121));
const V2_IPV6 = v2(
  Command.PROXY,
  new IPv6ProxyAddress(IPv6Address.createFrom([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]), 1, IPv6Address.createFrom(Array(16).fill(0)), 2),
);
const V2_MAPPED = v2(
  Command.PROXY,
  // HAProxy on a dual-stack listener hands on an IPv4 client as AF_INET6 ::ffff:192.0.2.33.
  new IPv6ProxyAddress(IPv6Address.createFrom([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 33]), 1, IPv6Address.createFrom(Array(16).fill(0)), 2),
);
const V2_LOCAL = v2(Command.LOCAL, new UnspecProxyAddress());
const V1 = Buffer.from('PROXY TCP4 192.0.2.7 10.0.0.1 40000 2121\r\n');
const SSH = Buffer.from('SSH-2.0-OpenSSH_9.2\r\n');

describe('parseProxyHeader', () => {
  const cases: [string, Buffer, HeaderParse][] = [
    ['v1 TCP4', Buffer.concat([V1, SSH]), { kind: 'proxied', version: 1, address: '192.0.2.7', port: 40000, length: V1.length }],
    ['v1 TCP6', Buffer.from('PROXY TCP6 2001:db8::5 ::1 1 2\r\n'), { kind: 'proxied', version: 1, address: '2001:db8::5', port: 1, length: 32 }],
    ['v1 TCP6 with a mapped IPv4', Buffer.from('PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n'), { kind: 'proxied', version: 1, address: '192.0.2.9', port: 1, length: 37 }],
    // Each address in the one form a direct connection from it has, or a ban on one would miss the other.
    ['v1 TCP6 with a mapped IPv4 in hex', Buffer.from('PROXY TCP6 ::FFFF:C000:0221 ::1 1 2\r\n'), { kind: 'proxied', version: 1, address: '192.0.2.33', port: 1, length: 37 }],
    ['v1 TCP6 in capitals, zeros written out', Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:5 ::1 1 2\r\n'), { kind: 'proxied', version: 1, address: '2001:db8::5', port: 1, length: 41 }],
    ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN\r\n'), { kind: 'local', version: 1, length: 15 }],
    ['v1 truncated', V1.subarray(0, 20), { kind: 'incomplete' }],
    ['v1 signature prefix', Buffer.from('PRO'), { kind: 'incomplete' }],
    ['v1 without CRLF within 107 bytes', Buffer.from('PROXY TCP4 ' + '1'.repeat(120)), { kind: 'invalid', reason: 'v1 header too long' }],
    ['v1 not an address', Buffer.from('PROXY TCP4 evil.example 10.0.0.1 1 2\r\n'), { kind: 'invalid', reason: 'bad v1 source address' }],
    ['v1 IPv6 as TCP4', Buffer.from('PROXY TCP4 ::1 ::1 1 2\r\n'), { kind: 'invalid', reason: 'bad v1 source address' }],
    ['v1 garbage', Buffer.from('PROXY HELLO there\r\n'), { kind: 'invalid', reason: 'malformed v1 header' }],
    ['v1 port out of range', Buffer.from('PROXY TCP4 192.0.2.7 10.0.0.1 99999 2121\r\n'), { kind: 'invalid', reason: 'bad v1 source port' }],
    ['v1 destination port out of range', Buffer.from('PROXY TCP4 192.0.2.7 10.0.0.1 2121 99999\r\n'), { kind: 'invalid', reason: 'bad v1 destination port' }],
    ['v1 destination not an address', Buffer.from('PROXY TCP4 192.0.2.7 host.example 1 2\r\n'), { kind: 'invalid', reason: 'bad v1 destination address' }],
    ['v1 destination of the other family', Buffer.from('PROXY TCP6 2001:db8::5 10.0.0.1 1 2\r\n'), { kind: 'invalid', reason: 'bad v1 destination address' }],
    ['v2 IPv4', Buffer.concat([V2_IPV4, SSH]), { kind: 'proxied', version: 2, address: '192.0.2.7', port: 40000, length: V2_IPV4.length }],
    ['v2 IPv6', V2_IPV6, { kind: 'proxied', version: 2, address: '2001:db8::5', port: 1, length: V2_IPV6.length }],
    ['v2 IPv6 with a mapped IPv4', V2_MAPPED, { kind: 'proxied', version: 2, address: '192.0.2.33', port: 1, length: V2_MAPPED.length }],
    ['v2 LOCAL', V2_LOCAL, { kind: 'local', version: 2, length: 16 }],
    ['v2 truncated preamble', V2_IPV4.subarray(0, 14), { kind: 'incomplete' }],
    ['v2 truncated addresses', V2_IPV4.subarray(0, 20), { kind: 'incomplete' }],
    ['v2 oversize length', Buffer.concat([V2_IPV4.subarray(0, 14), Buffer.from([0x02, 0x10])]), { kind: 'invalid', reason: 'v2 header too long' }],
    ['v2 bad version', Buffer.concat([V2_IPV4.subarray(0, 12), Buffer.from([0x31]), V2_IPV4.subarray(13)]), { kind: 'invalid', reason: 'malformed v2 header' }],
    ['no header (SSH banner)', SSH, { kind: 'absent' }],
    ['no header (TLS ClientHello)', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), { kind: 'absent' }],
  ];
  for (const [name, input, expected] of cases) {
    it(name, () => assert.deepEqual(parseProxyHeader(input), expected));
  }
});

/** A ProxyHeaders origin() over a real loopback connection whose client writes `chunks`. */
async function originOf(mode: ProxyMode, trusted: string[], chunks: Buffer[], source = '127.0.0.1'): Promise<{ origin: Origin; rest: Buffer; clientPort: number }> {
  const headers = new ProxyHeaders(trusted, pino({ level: 'silent' }));
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect({ host: '127.0.0.1', port, localAddress: source });
  client.on('error', () => undefined);
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  const clientPort = client.localPort ?? 0;
  for (const chunk of chunks) client.write(chunk);
  const origin = await headers.origin(socket, mode);
  let rest = Buffer.alloc(0);
  if (origin !== null) {
    client.end();
    for await (const chunk of socket) rest = Buffer.concat([rest, chunk as Buffer]);
  }
  client.destroy();
  socket.destroy();
  server.close();
  return { origin, rest, clientPort };
}

describe('headerClient: a loopback client of a balancer elsewhere is that balancer', () => {
  const cases: [string, string, string][] = [
    ['127.0.0.1', '192.0.2.5', '192.0.2.5'],
    ['127.8.9.10', '192.0.2.5', '192.0.2.5'],
    ['::1', '2001:db8::5', '2001:db8::5'],
    ['127.0.0.1', '127.0.0.1', '127.0.0.1'],
    ['127.0.0.1', '::1', '127.0.0.1'],
    ['198.51.100.7', '192.0.2.5', '198.51.100.7'],
    ['::2', '192.0.2.5', '::2'],
  ];
  for (const [client, peer, want] of cases) it(`${client} from ${peer}: ${want}`, () => assert.equal(headerClient(client, peer), want));
});

describe('ProxyHeaders.origin', () => {
  it('takes the v2 address and port from a trusted proxy and hands on the bytes after it', async () => {
    const { origin, rest } = await originOf('v2', ['127.0.0.0/8'], [V2_IPV4.subarray(0, 10), Buffer.concat([V2_IPV4.subarray(10), SSH])]);
    assert.deepEqual({ origin, rest }, { origin: { address: '192.0.2.7', port: 40000, proxy: 2 }, rest: SSH });
  });
  it('takes the v1 port too, not the balancer\'s own', async () => {
    assert.deepEqual((await originOf('v1', ['127.0.0.1/32'], [V1])).origin, { address: '192.0.2.7', port: 40000, proxy: 1 });
  });
  it('refuses a v1 header where v2 is required', async () => {
    assert.equal((await originOf('v2', ['127.0.0.1/32'], [V1])).origin, null);
  });
  it('refuses an untrusted address under v1/v2 without reading it', async () => {
    assert.equal((await originOf('v1', ['127.0.0.1/32'], [V1], '127.0.0.2')).origin, null);
  });
  it('serves an untrusted address under optional with its own address and bytes, header or not', async () => {
    const { origin, rest, clientPort } = await originOf('optional', ['127.0.0.1/32'], [V1], '127.0.0.2');
    assert.deepEqual({ origin, rest }, { origin: { address: '127.0.0.2', port: clientPort }, rest: V1 });
  });
  it('serves a trusted address without a header under optional', async () => {
    const { origin, rest, clientPort } = await originOf('optional', ['127.0.0.1/32'], [SSH]);
    assert.deepEqual({ origin, rest }, { origin: { address: '127.0.0.1', port: clientPort }, rest: SSH });
  });
  it('ignores headers altogether when off', async () => {
    const { origin, rest, clientPort } = await originOf('off', ['127.0.0.1/32'], [V1]);
    assert.deepEqual({ origin, rest }, { origin: { address: '127.0.0.1', port: clientPort }, rest: V1 });
  });
  it('closes a LOCAL connection', async () => {
    assert.equal((await originOf('v2', ['127.0.0.1/32'], [V2_LOCAL])).origin, null);
  });
  it('refuses garbage from a trusted proxy', async () => {
    assert.equal((await originOf('optional', ['127.0.0.1/32'], [Buffer.from('PROXY nonsense\r\n')])).origin, null);
  });
  it('gives up on a trusted proxy that stops halfway through its header', async () => {
    const started = Date.now();
    assert.equal((await originOf('v2', ['127.0.0.1/32'], [V2_IPV4.subarray(0, 20)])).origin, null);
    assert.ok(Date.now() - started >= HEADER_TIMEOUT_MS - 100);
  });
});
