import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestServer } from './helpers/server.js';

// Found by an operator-side review: `trustedProxies: [0.0.0.0/0]` with the PROXY protocol on ran in silence, every
// client free to name any address (bans, allow lists and the trail take it at its word).
describe('a trusted proxy that is every address', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'trustedProxies: ["0.0.0.0/0", "10.0.0.5/32"]\nftp:\n  proxyProtocol: optional\n' });
  });
  after(async () => {
    await srv.stop();
  });

  it('is said at start, with the front-ends that take headers', { timeout: 60_000 }, () => {
    assert.match(srv.log, /"msg":"trustedProxies holds 0\.0\.0\.0\/0, every address: any client of ftp may name any address in a PROXY header, and bans, allow lists and the audit trail take it at its word; list only the balancers' addresses"/);
  });
});
