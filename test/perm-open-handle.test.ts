import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * A file opened through a link lives in the link's target directory: what
 * its handle may change (SFTP FSETSTAT, SCP -p) is what that directory
 * allows, not what the directory of the name the client typed allows.
 * Found by an adversarial review: an append handle opened as /in/victim
 * (a link to /incoming, upload and list only) emptied the file, a read
 * handle of /latest/readme (a link to /pub, list and download) set its
 * times, and scp -p into /in set modes and times in /incoming.
 */

const PASSWORD = 'mallory password';
const PERMISSION_DENIED = 3;

describe('changes through an open file reached by a link take the permissions of where the file is', () => {
  let srv: TestServer;
  let home: string;
  let c: ssh2.Client;
  let sftp: ssh2.SFTPWrapper;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'mallory', password: PASSWORD, args: ['--perms', 'all'] }] });
    for (const [dir, perms] of [['/pub', 'list,download'], ['/incoming', 'upload,list']] as const) {
      const r = sluice(srv.dir, ['user', 'perm', 'mallory', dir, perms]);
      assert.equal(r.code, 0, r.stderr);
    }
    home = srv.home('mallory');
    mkdirSync(join(home, 'pub'));
    mkdirSync(join(home, 'incoming'));
    writeFileSync(join(home, 'pub', 'readme'), 'README');
    writeFileSync(join(home, 'incoming', 'victim'), 'VICTIM DATA');
    writeFileSync(join(home, 'own'), 'OWN');
    // Links an administrator might place for convenience.
    symlinkSync('pub', join(home, 'latest'));
    symlinkSync('incoming', join(home, 'in'));
    c = await sshConnect({ port: srv.sftpPort, username: 'mallory', password: PASSWORD });
    sftp = await sftpOf(c);
  });
  after(async () => {
    c?.end();
    await srv?.stop();
  });

  const withHandle = async (path: string, flags: ssh2.OpenMode, use: (h: Buffer) => Promise<unknown>): Promise<number | string> => {
    const h = await call<Buffer>((cb) => sftp.open(path, flags, cb));
    try {
      return await statusOf(use(h));
    } finally {
      await call((cb) => sftp.close(h, cb)).catch(() => undefined);
    }
  };

  it('FSETSTAT size on an append handle of /in/victim is refused (no overwrite in /incoming)', async () => {
    assert.equal(await withHandle('/in/victim', 'a', (h) => call((cb) => sftp.fsetstat(h, { size: 0 } as ssh2.InputAttributes, cb))), PERMISSION_DENIED);
    assert.equal(readFileSync(join(home, 'incoming', 'victim'), 'utf8'), 'VICTIM DATA');
  });

  it('FSETSTAT times on a read handle of /latest/readme are refused (no chtimes in /pub)', async () => {
    const before = statSync(join(home, 'pub', 'readme')).mtimeMs;
    assert.equal(await withHandle('/latest/readme', 'r', (h) => call((cb) => sftp.futimes(h, 86400, 86400, cb))), PERMISSION_DENIED);
    assert.equal(statSync(join(home, 'pub', 'readme')).mtimeMs, before);
  });

  it('FSETSTAT mode on a read handle of /latest/readme is refused (no chmod in /pub), and allowed on a file of the home', async () => {
    assert.equal(await withHandle('/latest/readme', 'r', (h) => call((cb) => sftp.fchmod(h, 0o777, cb))), PERMISSION_DENIED);
    assert.equal(statSync(join(home, 'pub', 'readme')).mode & 0o777, 0o644);
    assert.equal(await withHandle('/own', 'r', (h) => call((cb) => sftp.fchmod(h, 0o600, cb))), 'ok');
    assert.equal(statSync(join(home, 'own')).mode & 0o777, 0o600);
  });

  it('scp -p into /in stores the file without the mode and times /incoming does not allow; into the home, with them', async () => {
    const scp = async (target: string, name: string): Promise<void> => {
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => c.exec(`scp -p -t ${target}`, (err, s) => (err ? reject(err) : resolve(s))));
      const acks: Buffer[] = [];
      ch.on('data', (d: Buffer) => acks.push(d));
      const ack = async (n: number) => {
        while (Buffer.concat(acks).length < n) await new Promise((r) => setTimeout(r, 5));
        assert.ok(Buffer.concat(acks).subarray(0, n).every((b) => b === 0), Buffer.concat(acks).toString());
      };
      await ack(1);
      ch.write('T86400 0 86400 0\n');
      await ack(2);
      ch.write(`C0777 4 ${name}\n`);
      await ack(3);
      ch.write('DATA\0');
      await ack(4);
      ch.end();
      await new Promise((r) => ch.once('close', r));
    };
    await scp('/in', 'dropped');
    const dropped = statSync(join(home, 'incoming', 'dropped'));
    assert.equal(dropped.mode & 0o777, 0o644);
    assert.notEqual(dropped.mtimeMs, 86_400_000);
    await scp('/', 'kept');
    const kept = statSync(join(home, 'kept'));
    assert.equal(kept.mode & 0o777, 0o777);
    assert.equal(kept.mtimeMs, 86_400_000);
  });
});
