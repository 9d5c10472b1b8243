import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cidrMatcher, widePublicRanges } from '../src/auth/ip-rules.js';
import { TestServer } from './helpers/server.js';

// Found by an operator-side review: `trustedProxies: [0.0.0.0/0]` with the PROXY protocol on ran in silence, every
// client free to name any address (bans, allow lists and the trail take it at its word). The warning first looked for
// prefix 0 alone, which the same space split in two /1s slipped past.
describe('a trusted proxy range of the public internet', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'trustedProxies: ["0.0.0.0/1", "128.0.0.0/1", "10.0.0.5/32"]\nftp:\n  proxyProtocol: optional\n' });
  });
  after(async () => {
    await srv.stop();
  });

  it('is said at start, with the front-ends that take headers', { timeout: 60_000 }, () => {
    assert.match(
      srv.log,
      /"msg":"trustedProxies holds 0\.0\.0\.0\/1 and 128\.0\.0\.0\/1, internet addresses wider than \/16 \(IPv6 \/48\): any client from them of ftp may name any address in a PROXY header, and bans, allow lists and the audit trail take it at its word; list only the balancers' addresses"/,
    );
  });

  it('is told from balancer pools and private networks', () => {
    const widest = { ipv4: 16, ipv6: 48 };
    assert.deepEqual(widePublicRanges(['0.0.0.0/0', '::/0', '2001:db8::/32', '11.0.0.0/8', '203.0.113.0/15'], widest), ['0.0.0.0/0', '::/0', '2001:db8::/32', '11.0.0.0/8', '203.0.113.0/15']);
    assert.deepEqual(
      widePublicRanges(['203.0.113.0/16', '198.51.100.7/32', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '127.0.0.0/8', 'fd00::/8', 'fe80::/10', '2001:db8::/48'], widest),
      [],
    );
    // Wider than the private block it starts in: 8.0.0.0/6 holds 10/8 and public addresses beside it.
    assert.deepEqual(widePublicRanges(['8.0.0.0/6', '172.0.0.0/8'], widest), ['8.0.0.0/6', '172.0.0.0/8']);
  });

  it('judges an IPv6 range holding IPv4-mapped addresses by the IPv4 clients the matcher takes it for', () => {
    // Found by an adversarial review: the proxy matcher (Node's BlockList) matches an IPv4 client against the mapped
    // range ::ffff:0:0/96, so trusting it trusts every IPv4 address, yet at /96 it passed for a pool of a few.
    const widest = { ipv4: 16, ipv6: 48 };
    const all = ['::ffff:0:0/96', '::FFFF:0.0.0.0/96', '::/80', '::ffff:1.0.0.0/100', '::ffff:10.0.0.0/104', '::ffff:203.0.113.0/120', '::/96', '2001:db8::/64'];
    const trusts = cidrMatcher(all);
    assert.ok(trusts('198.51.100.1') && trusts('::ffff:198.51.100.1'), 'an IPv4 client is trusted');
    assert.deepEqual(widePublicRanges(all, widest), ['::ffff:0:0/96', '::FFFF:0.0.0.0/96', '::/80', '::ffff:1.0.0.0/100']);
    for (const cidr of ['::ffff:10.0.0.0/104', '::ffff:203.0.113.0/120', '::/96', '2001:db8::/64']) {
      assert.equal(cidrMatcher([cidr])('198.51.100.1'), false, `${cidr} does not trust a public IPv4 client`);
    }
  });
});
