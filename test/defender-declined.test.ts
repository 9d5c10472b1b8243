import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RawFtp } from './helpers/ftp-raw.js';
import { need } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/*
 * The defender must not ban a client for turning the server down: curl that
 * does not trust the certificate, ssh-keyscan asking for a host key type the
 * server lacks. Each of these, five times in ten minutes, banned the address
 * (a whole office behind one NAT). Garbage on the same ports still scores.
 */


describe('defender: a client that declines the handshake is not an attacker', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start();
  });
  after(async () => {
    await srv.stop();
  });


  it('curl refusing the self-signed certificate, implicit and explicit FTPS, six times each', { timeout: 120_000 }, async (t) => {
    if (!need(t, 'curl')) return;
    const from = '127.0.0.41';
    for (let i = 0; i < 6; i++) {
      const implicit = spawnSync('curl', ['-s', '--max-time', '10', '--interface', from, `ftps://127.0.0.1:${srv.ftpsPort}/`, '-u', 'x:y']);
      assert.equal(implicit.status, 60, 'curl refuses the certificate');
      const explicit = spawnSync('curl', ['-s', '--max-time', '10', '--interface', from, '--ssl-reqd', `ftp://127.0.0.1:${srv.ftpPort}/`, '-u', 'x:y']);
      assert.equal(explicit.status, 60, 'curl refuses the certificate');
    }
    assert.deepEqual(srv.bans(), []);
    assert.equal(await RawFtp.greeting(srv.ftpPort, from), 220);
  });

  it('ssh-keyscan for a host key type the server does not have, six times', { timeout: 120_000 }, async (t) => {
    if (!need(t, 'ssh-keyscan')) return;
    for (let i = 0; i < 6; i++) spawnSync('ssh-keyscan', ['-t', 'ecdsa', '-p', String(srv.sftpPort), '127.0.0.1'], { timeout: 20_000 });
    assert.deepEqual(srv.bans(), []);
  });

  it('bytes that are no TLS at all on the implicit port still get the address banned', { timeout: 60_000 }, async () => {
    const from = '127.0.0.42';
    for (let i = 0; i < 5; i++) {
      const s = net.connect({ port: srv.ftpsPort, host: '127.0.0.1', localAddress: from });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      s.write('USER someone\r\n');
      await new Promise((r) => s.once('close', r));
    }
    assert.ok(srv.bans().includes(from), 'banned');
    assert.equal(await RawFtp.greeting(srv.ftpPort, from), 'closed');
  });
});
