import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { linkSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client } from 'basic-ftp';
import type ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

type Rec = Record<string, unknown>;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function ftp(srv: TestServer): Promise<Client> {
  const client = new Client(20_000);
  await client.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'eve', password: 'eve password' });
  return client;
}

/** The last record of `event` whose `key` is `value`, once the server flushed it. */
async function recordOf(srv: TestServer, event: string, key: string, value: string): Promise<Rec | undefined> {
  const hit = (l: Rec) => l.event === event && l[key] === value;
  return (await srv.auditUntil(hit)).filter(hit).at(-1);
}

/**
 * Found by a review: a rename or an upload that replaced a file said nothing of it, so a file
 * destroyed that way left no trace unless one replayed every earlier record.
 */
describe('audit: a record says what a rename or an upload replaced, or a delete removed', () => {
  let srv: TestServer;
  let home: string;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'eve', password: 'eve password', args: ['--perms', 'all'] }] });
    home = srv.home('eve');
  });
  after(() => srv.stop());

  it('FTP RNFR/RNTO over a file, and STOR over one: replaced with its size; onto a free name: nothing', async () => {
    writeFileSync(join(home, 'victim.txt'), 'ten bytes!');
    writeFileSync(join(home, 'stored.txt'), 'seven b');
    const c = await ftp(srv);
    try {
      await c.uploadFrom(Readable.from([Buffer.from('new')]), '/incoming.txt');
      await c.rename('/incoming.txt', '/victim.txt');
      await c.rename('/victim.txt', '/free.txt');
      await c.uploadFrom(Readable.from([Buffer.from('over it')]), '/stored.txt');
    } finally {
      c.close();
    }
    assert.deepEqual((await recordOf(srv, 'rename', 'to', '/victim.txt'))?.replaced, { size: 10 });
    const free = await recordOf(srv, 'rename', 'to', '/free.txt');
    assert.ok(free && !('replaced' in free) && !('replaced_unknown' in free), JSON.stringify(free));
    const fresh = await recordOf(srv, 'upload', 'path', '/incoming.txt');
    assert.ok(fresh && !('replaced' in fresh) && !('was' in fresh), JSON.stringify(fresh));
    assert.deepEqual((await recordOf(srv, 'upload', 'path', '/stored.txt'))?.replaced, { size: 7 });
  });

  it('SFTP: posix-rename over a whole upload carries its known hash; OPEN TRUNC replaces, OPEN without it says the size it had', async () => {
    // 1 MiB: large enough for the server to keep the upload's hash (its receipt), so the rename needs no read for it.
    const big = randomBytes(1024 * 1024);
    writeFileSync(join(home, 'kept.txt'), 'twelve bytes');
    writeFileSync(join(home, 'inplace.txt'), 'eleven byte');
    const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    try {
      const sftp = await sftpOf(conn);
      const put = async (path: string, data: Buffer, flags: 'w' | 'r+') => {
        const h = await call<Buffer>((cb) => sftp.open(path, flags, cb));
        await call((cb) => sftp.write(h, data, 0, data.length, 0, cb));
        await call((cb) => sftp.close(h, cb));
      };
      await put('/big.bin', big, 'w');
      await put('/small.bin', Buffer.from('small'), 'w');
      await call((cb) => sftp.ext_openssh_rename('/small.bin', '/big.bin', cb));
      await put('/kept.txt', Buffer.from('trunc'), 'w');
      await put('/inplace.txt', Buffer.from('in'), 'r+');
      // SFTP RENAME (no replace) refused over a file: nothing replaced, nothing recorded as such.
      await assert.rejects(call((cb) => (sftp as ssh2.SFTPWrapper).rename('/kept.txt', '/inplace.txt', cb)));
    } finally {
      conn.end();
    }
    assert.deepEqual((await recordOf(srv, 'rename', 'to', '/big.bin'))?.replaced, { size: big.length, sha256: sha256(big) });
    assert.deepEqual((await recordOf(srv, 'upload', 'path', '/kept.txt'))?.replaced, { size: 12 });
    const inPlace = await recordOf(srv, 'upload', 'path', '/inplace.txt');
    assert.equal(inPlace?.was, 11);
    assert.ok(!('replaced' in (inPlace ?? {})), JSON.stringify(inPlace));
    assert.equal(readFileSync(join(home, 'inplace.txt'), 'utf8'), 'ineven byte');
  });

  it('FTP DELE and SFTP REMOVE: removed with its size, and the links it keeps', async () => {
    writeFileSync(join(home, 'gone.txt'), 'six b!');
    writeFileSync(join(home, 'linked.txt'), 'five!');
    linkSync(join(home, 'linked.txt'), join(home, 'other-name.txt'));
    const c = await ftp(srv);
    try {
      await c.remove('/gone.txt');
    } finally {
      c.close();
    }
    const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    try {
      const sftp = await sftpOf(conn);
      await call((cb) => sftp.unlink('/linked.txt', cb));
    } finally {
      conn.end();
    }
    assert.deepEqual((await recordOf(srv, 'delete', 'path', '/gone.txt'))?.removed, { size: 6 });
    assert.deepEqual((await recordOf(srv, 'delete', 'path', '/linked.txt'))?.removed, { size: 5, links: 1 });
  });

  it('SCP over a file: replaced with its size', async () => {
    writeFileSync(join(home, 'scp.txt'), 'nine byte');
    const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    try {
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => conn.exec('scp -t /', (err, s) => (err ? reject(err) : resolve(s))));
      const closed = new Promise<void>((resolve) => ch.on('close', () => resolve()));
      ch.on('data', () => undefined);
      ch.write('C0644 3 scp.txt\n');
      ch.write('new');
      ch.write(Buffer.of(0));
      ch.end();
      await closed;
    } finally {
      conn.end();
    }
    assert.equal(readFileSync(join(home, 'scp.txt'), 'utf8'), 'new');
    assert.deepEqual((await recordOf(srv, 'upload', 'path', '/scp.txt'))?.replaced, { size: 9 });
  });
});

describe('audit: an in-place upload (uploads.atomic false) that empties a file says so', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\nuploads:\n  atomic: false\n', users: [{ name: 'eve', password: 'eve password', args: ['--perms', 'all'] }] });
  });
  after(() => srv.stop());

  it('STOR over a file truncates it at the open: replaced with the size it had; APPE into it: was', async () => {
    writeFileSync(join(srv.home('eve'), 'log.txt'), 'eight b!');
    writeFileSync(join(srv.home('eve'), 'tail.txt'), 'four');
    const c = await ftp(srv);
    try {
      await c.uploadFrom(Readable.from([Buffer.from('x')]), '/log.txt');
      await c.appendFrom(Readable.from([Buffer.from('+1')]), '/tail.txt');
    } finally {
      c.close();
    }
    assert.deepEqual((await recordOf(srv, 'upload', 'path', '/log.txt'))?.replaced, { size: 8 });
    const appended = await recordOf(srv, 'upload', 'path', '/tail.txt');
    assert.equal(appended?.was, 4);
    assert.equal(readFileSync(join(srv.home('eve'), 'tail.txt'), 'utf8'), 'four+1');
  });
});
