import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

const ATTACKER = '127.0.0.2';
const ALLOWED = '127.0.0.3';


/** Whether the SSH port answers `from` with its banner. */
async function sshBanner(port: number, from: string): Promise<boolean> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    socket.once('data', (d: Buffer) => {
      socket.destroy();
      resolve(d.toString().startsWith('SSH-'));
    });
    socket.once('close', () => resolve(false));
  });
}

/** Can TLS be negotiated on the implicit FTPS port from `from`? */
async function implicitTls(port: number, from: string): Promise<boolean> {
  const c = await RawFtp.connect(port, true, from).catch(() => null);
  c?.close();
  return c !== null;
}

async function failFtp(port: number, from: string, tries: number): Promise<void> {
  const c = await RawFtp.connect(port, false, from);
  await c.read();
  await c.startTls();
  for (let i = 0; i < tries; i++) await c.login('carol', `wrong ${i}`);
  c.close();
}

async function failSftp(port: number, from: string): Promise<void> {
  await assert.rejects(sshConnect({ port, username: 'carol', password: 'wrong', localAddress: from }));
}

describe('defender: failures over every protocol ban an address, persistently, once audited', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: `auth:\n  failureDelay: 0\ndefender:\n  allowList: ['${ALLOWED}/32']\n`,
      users: [{ name: 'carol', password: 'carol password' }],
    });
  });
  after(async () => {
    await srv.stop();
  });

  it('five failed logins, FTP and SFTP mixed, get the address refused on every port', { timeout: 120_000 }, async () => {
    assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 220);
    await failFtp(srv.ftpPort, ATTACKER, 3);
    await failSftp(srv.sftpPort, ATTACKER);
    assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 220, 'four failures are not enough');
    await failSftp(srv.sftpPort, ATTACKER);
    assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 'closed', 'FTP: closed before the greeting');
    assert.equal(await implicitTls(srv.ftpsPort, ATTACKER), false, 'implicit FTPS: closed before the handshake');
    assert.equal(await sshBanner(srv.sftpPort, ATTACKER), false, 'SSH: closed before the banner');
    // Everybody else is served as before.
    assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.1'), 220);
    const ok = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
    ok.end();
  });

  it('records the ban once, however often the address knocks afterwards', { timeout: 60_000 }, async () => {
    for (let i = 0; i < 10; i++) assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 'closed');
    // A second ban would be recorded as a knock is refused: a failure from another address, made now, is
    // recorded after it, and waited for.
    await failFtp(srv.ftpPort, '127.0.0.4', 1);
    const bans = (await srv.auditUntil((l) => l.event === 'login-failed' && l.ip === '127.0.0.4')).filter((l) => l.event === 'ban');
    assert.equal(bans.length, 1);
    assert.equal(bans[0]?.ip, ATTACKER);
    assert.equal(bans[0]?.seconds, 900);
  });

  it('never bans an allow-listed address', { timeout: 120_000 }, async () => {
    await failFtp(srv.ftpPort, ALLOWED, 3);
    await failFtp(srv.ftpPort, ALLOWED, 3);
    await failSftp(srv.sftpPort, ALLOWED);
    assert.equal(await RawFtp.greeting(srv.ftpPort, ALLOWED), 220);
    assert.equal(await sshBanner(srv.sftpPort, ALLOWED), true);
    // A ban would come with the fifth failure, before the SFTP one's record.
    const records = await srv.auditUntil((l) => l.event === 'login-failed' && l.ip === ALLOWED && l.protocol === 'sftp');
    assert.ok(!records.some((l) => l.event === 'ban' && l.ip === ALLOWED));
  });

  it('keeps the ban across a restart; `sluice ban list` shows it', { timeout: 120_000 }, async () => {
    await srv.restart();
    assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 'closed');
    assert.equal(await sshBanner(srv.sftpPort, ATTACKER), false);
    const list = sluice(srv.dir, ['ban', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const bans = JSON.parse(list.stdout) as { address: string; count: number }[];
    assert.deepEqual(bans.map((b) => b.address), [ATTACKER]);
  });

  it('`sluice ban remove` lifts it and `sluice ban add` bans, both seen by the running server at once', { timeout: 60_000 }, async () => {
    const removed = sluice(srv.dir, ['ban', 'remove', ATTACKER]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 220);
    assert.equal(await sshBanner(srv.sftpPort, ATTACKER), true);
    const added = sluice(srv.dir, ['ban', 'add', '127.0.0.4', '--for', '1h']);
    assert.equal(added.code, 0, added.stderr);
    assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.4'), 'closed');
    assert.equal(await sshBanner(srv.sftpPort, '127.0.0.4'), false);
    assert.equal(sluice(srv.dir, ['ban', 'add', 'not-an-address']).code, 2);
  });

  it('a bare connect-and-close scores nothing', { timeout: 60_000 }, async () => {
    for (let i = 0; i < 20; i++) {
      for (const port of [srv.ftpPort, srv.ftpsPort, srv.sftpPort]) {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.5' });
        s.on('error', () => undefined);
        await new Promise((r) => s.once('connect', r));
        s.destroy();
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.5'), 220);
    assert.equal(await sshBanner(srv.sftpPort, '127.0.0.5'), true);
  });
});
