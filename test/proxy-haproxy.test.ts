import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command, IPv4Address, IPv4ProxyAddress, TransportProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { sluice } from './helpers/cli.js';
import { HaProxy, haproxyMissing } from './helpers/haproxy.js';
import { freePorts, TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/*
 * sluice behind a real HAProxy (send-proxy-v2) on loopback: HAProxy listens on
 * 127.0.0.5 and connects to sluice on 127.0.0.1, the one trusted proxy; clients
 * connect to HAProxy from 127.0.0.2 and 127.0.0.3. Everything sluice knows
 * about a client (audit, bans) must be the client's address, not HAProxy's.
 */
// Debian's curl (.ci/run installs it); these transfers are one file each, which any curl does.
const CURL = 'curl';
const BALANCER = '127.0.0.5';
const skip = haproxyMissing();
if (skip) console.log(`# ${skip}`);

function curl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(CURL, ['-sS', '-k', '--max-time', '30', ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

/** The first reply line sluice sends a raw connection from `from` that starts with `header`, or 'closed'. */
async function firstLine(port: number, from: string, header: Buffer): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
  socket.on('error', () => undefined);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  socket.on('connect', () => socket.write(header));
  // A reset (the server closing at once) is an answer too; so is a greeting within the wait.
  await new Promise((resolve) => {
    socket.on('close', resolve);
    setTimeout(resolve, 3000);
  });
  socket.destroy();
  return text.split('\r\n')[0] || 'closed';
}

const v2Header = (ip: [number, number, number, number]): Buffer =>
  Buffer.from(
    new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, new IPv4ProxyAddress(IPv4Address.createFrom(ip), 40000, IPv4Address.createFrom([127, 0, 0, 1]), 21)).build(),
  );

describe('behind HAProxy with PROXY protocol v2', { skip: skip ?? false }, () => {
  let srv: TestServer;
  let ha: HaProxy;
  const fronts = { ftp: 0, ftps: 0, sftp: 0 };
  const pasv = 20000 + Math.floor(Math.random() * 4000) * 10;
  const ftpUrl = (implicit = false) => `${implicit ? 'ftps' : 'ftp'}://${BALANCER}:${implicit ? fronts.ftps : fronts.ftp}`;
  /** The addresses `user`'s logins were recorded with, once one of them satisfies `found`. */
  const logins = async (user: string, found: (r: Record<string, unknown>) => boolean) =>
    (await srv.auditUntil((r) => r.event === 'login' && r.user === user && found(r))).filter((r) => r.event === 'login' && r.user === user).map((r) => r.ip);

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_PASV_PORTS: `${pasv}-${pasv + 9}`, SLUICE_TRUSTED_PROXIES: '127.0.0.1', SLUICE_FTP_PROXY_PROTOCOL: 'v2', SLUICE_SFTP_PROXY_PROTOCOL: 'v2' },
      yaml: `ftp:\n  passiveAddress: ${BALANCER}\n`,
      users: [
        { name: 'alice', password: 'alice-pw-123' },
        { name: 'bob', password: 'bob-pw-1234' },
      ],
    });
    [fronts.ftp, fronts.ftps, fronts.sftp] = (await freePorts(3)) as [number, number, number];
    ha = await HaProxy.start(BALANCER, [
      { name: 'ftp', listen: String(fronts.ftp), to: srv.ftpPort },
      { name: 'ftps', listen: String(fronts.ftps), to: srv.ftpsPort },
      { name: 'sftp', listen: String(fronts.sftp), to: srv.sftpPort },
      { name: 'passive', listen: `${pasv}-${pasv + 9}` },
    ]);
  });
  after(async () => {
    await ha?.stop();
    await srv?.stop();
  });

  it('SFTP: the login is audited with the client address and port, not the balancer\'s', { timeout: 60_000 }, async () => {
    const [localPort] = (await freePorts(1)) as [number];
    const c = await sshConnect({ host: BALANCER, port: fronts.sftp, localAddress: '127.0.0.2', localPort, username: 'alice', password: 'alice-pw-123' });
    c.end();
    assert.deepEqual(await logins('alice', () => true), ['127.0.0.2']);
    const login = (await srv.audit(0)).find((r) => r.event === 'login' && r.user === 'alice');
    assert.equal(login?.port, localPort);
  });

  it('explicit FTPS: login and passive transfers (PASV and EPSV) through the balancer, audited with the client address', { timeout: 90_000 }, async () => {
    const file = join(srv.dir, 'payload.txt');
    writeFileSync(file, 'through the balancer\n'.repeat(1000));
    const up = await curl(['--interface', '127.0.0.2', '--ssl-reqd', '--disable-epsv', '-u', 'bob:bob-pw-1234', '-T', file, `${ftpUrl()}/up.txt`]);
    assert.equal(up.code, 0, up.stderr);
    const down = await curl(['--interface', '127.0.0.2', '--ssl-reqd', '-u', 'bob:bob-pw-1234', `${ftpUrl()}/up.txt`]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout, readFileSync(file, 'utf8'));
    // Both transfers, then the second curl session's logout (written after its transfer): a third transfer record would be in by then.
    const records = await srv.auditWhen((all) => {
      const session = all.find((r) => r.user === 'bob' && r.event === 'download')?.session;
      return all.some((r) => r.user === 'bob' && r.event === 'upload') && session !== undefined && all.some((r) => r.event === 'logout' && r.session === session);
    });
    const transfers = records.filter((r) => r.user === 'bob' && (r.event === 'upload' || r.event === 'download'));
    assert.deepEqual(transfers.map((r) => [r.event, r.ip]), [['upload', '127.0.0.2'], ['download', '127.0.0.2']]);
  });

  it('implicit FTPS through the balancer, audited with the client\'s port', { timeout: 60_000 }, async () => {
    // A range: curl takes its data connections' ports from it too. It lies above the kernel's ephemeral
    // ports (freePorts), where the balancer's own connections to the server never come from.
    const [from] = (await freePorts(1)) as [number];
    const to = Math.min(from + 20, 65_535);
    const r = await curl(['--interface', '127.0.0.3', '--local-port', `${from}-${to}`, '-u', 'bob:bob-pw-1234', `${ftpUrl(true)}/up.txt`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await logins('bob', (r) => r.ip === '127.0.0.3')).includes('127.0.0.3'));
    const login = (await srv.audit(0)).find((r) => r.event === 'login' && r.user === 'bob' && r.ip === '127.0.0.3');
    const port = Number(login?.port);
    assert.ok(port >= from && port <= to, `login port ${port}, the client's from ${from}-${to}`);
  });

  it('a ban of the client address holds through the balancer; another client still logs in', { timeout: 90_000 }, async () => {
    const added = sluice(srv.dir, ['ban', 'add', '127.0.0.2']);
    assert.equal(added.code, 0, added.stderr);
    try {
      const banned = await curl(['--interface', '127.0.0.2', '--ssl-reqd', '-u', 'bob:bob-pw-1234', `${ftpUrl()}/up.txt`]);
      assert.notEqual(banned.code, 0, 'the banned client is refused');
      await assert.rejects(sshConnect({ host: BALANCER, port: fronts.sftp, localAddress: '127.0.0.2', username: 'alice', password: 'alice-pw-123' }));
      const other = await curl(['--interface', '127.0.0.3', '--ssl-reqd', '-u', 'bob:bob-pw-1234', `${ftpUrl()}/up.txt`]);
      assert.equal(other.code, 0, other.stderr);
    } finally {
      sluice(srv.dir, ['ban', 'remove', '127.0.0.2']);
    }
  });

  it('a header from an address that is not a trusted proxy is refused; the same from the proxy is served', { timeout: 30_000 }, async () => {
    assert.equal(await firstLine(srv.ftpPort, '127.0.0.2', v2Header([192, 0, 2, 9])), 'closed');
    assert.equal(await firstLine(srv.ftpPort, '127.0.0.2', Buffer.from('PROXY TCP4 192.0.2.9 127.0.0.1 4000 21\r\n')), 'closed');
    assert.match(await firstLine(srv.ftpPort, '127.0.0.1', v2Header([192, 0, 2, 9])), /^220 /);
  });
});
