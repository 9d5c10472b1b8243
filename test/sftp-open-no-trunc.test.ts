import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

// SSH_FXF_* (draft-ietf-secsh-filexfer-02): OpenSSH 9's scp (SFTP mode) opens its target WRITE|CREAT, without TRUNC.
const WRITE = 0x02;
const CREAT = 0x08;
const APPEND = 0x04;
const TRUNC = 0x10;
const READ = 0x01;
const EXCL = 0x20;

describe('SFTP OPEN WRITE|CREAT without TRUNC (OpenSSH 9 scp)', () => {
  let srv: TestServer;
  let conn: ssh2.Client;
  let s: ssh2.SFTPWrapper;

  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'alice', password: 'alice password', args: ['--perms', 'all'] },
        { name: 'rita', password: 'rita password', args: ['--perms', 'list,download'] },
      ],
    });
    conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    s = await sftpOf(conn);
  });
  after(async () => {
    conn?.end();
    await srv?.stop();
  });

  const home = () => srv.home('alice');
  const open = (path: string) => call<Buffer>((cb) => s.open(path, WRITE | CREAT, cb));
  const write = (h: Buffer, data: string, at: number) => call((cb) => s.write(h, Buffer.from(data), 0, Buffer.byteLength(data), at, cb));
  const close = (h: Buffer) => call((cb) => s.close(h, cb));
  const staged = () => readdirSync(home()).filter((n) => n.startsWith('.sluice-upload-'));

  it('a new name is written atomically: while open only the hidden staged file exists, the name after CLOSE', async () => {
    const h = await open('/new.txt');
    await write(h, 'first half, ', 0);
    await write(h, 'second half\n', 12);
    assert.ok(!existsSync(join(home(), 'new.txt')), 'the final name is not there while the upload is open');
    assert.equal(staged().length, 1, JSON.stringify(readdirSync(home())));
    await close(h);
    assert.equal(readFileSync(join(home(), 'new.txt'), 'utf8'), 'first half, second half\n');
    assert.deepEqual(staged(), []);
    const up = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/new.txt')).find((l) => l.event === 'upload' && l.path === '/new.txt');
    assert.equal(up?.result, 'ok');
    assert.equal(up?.bytes, 24);
  });

  it('a file that took the new name meanwhile is not replaced: the client asked to keep what is there', async () => {
    const h = await open('/raced.txt');
    await write(h, 'from the upload', 0);
    writeFileSync(join(home(), 'raced.txt'), 'appeared meanwhile');
    await assert.rejects(close(h), /File exists/);
    assert.equal(readFileSync(join(home(), 'raced.txt'), 'utf8'), 'appeared meanwhile');
    assert.deepEqual(staged(), []);
  });

  it('an existing file is still written in place (no TRUNC: the rest is kept)', async () => {
    writeFileSync(join(home(), 'old.txt'), 'hello world');
    const h = await open('/old.txt');
    await write(h, 'J', 0);
    // In place: the byte is there under the name before the CLOSE, and nothing is staged.
    assert.equal(readFileSync(join(home(), 'old.txt'), 'utf8'), 'Jello world');
    assert.deepEqual(staged(), []);
    await close(h);
    assert.equal(readFileSync(join(home(), 'old.txt'), 'utf8'), 'Jello world');
  });

  // Found by a review: APPEND with TRUNC empties the file first, yet the upload was planned to start at the
  // old size, and its record said it resumed there, with no hash, though it wrote the whole file.
  it('WRITE|APPEND|CREAT|TRUNC over a file: a whole upload from 0, recorded so with its hash', async () => {
    writeFileSync(join(home(), 'emptied.txt'), 'B'.repeat(100));
    const h = await call<Buffer>((cb) => s.open('/emptied.txt', WRITE | APPEND | CREAT | TRUNC, cb));
    await write(h, 'hello', 0);
    await close(h);
    assert.equal(readFileSync(join(home(), 'emptied.txt'), 'utf8'), 'hello');
    const up = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/emptied.txt')).find((l) => l.event === 'upload' && l.path === '/emptied.txt');
    assert.equal(up?.result, 'ok');
    assert.deepEqual([up?.offset, up?.resumed, up?.bytes, up?.size], [0, false, 5, 5]);
    assert.equal(up?.sha256, createHash('sha256').update('hello').digest('hex'));
  });

  // paramiko's open(name, 'x') sends CREAT|EXCL with neither READ nor WRITE: it read an existing file, EXCL
  // unseen, and a missing one was no such file, where OpenSSH refuses the one and creates the other.
  it('CREAT|EXCL without WRITE creates the file or is refused; READ|CREAT on an existing file reads it, for a user who may only download too', async () => {
    const made = await call<Buffer>((cb) => s.open('/made-x.txt', CREAT | EXCL, cb));
    await close(made);
    assert.equal(readFileSync(join(home(), 'made-x.txt'), 'utf8'), '');
    await assert.rejects(call<Buffer>((cb) => s.open('/made-x.txt', CREAT | EXCL, cb)), /exists/i);
    writeFileSync(join(srv.home('rita'), 'shared.txt'), 'read me');
    const reader = await sshConnect({ port: srv.sftpPort, username: 'rita', password: 'rita password' });
    try {
      const r = await sftpOf(reader);
      const h = await call<Buffer>((cb) => r.open('/shared.txt', READ | CREAT, cb));
      const buf = Buffer.alloc(16);
      const n = await call<number>((cb) => r.read(h, buf, 0, 16, 0, cb));
      assert.equal(buf.subarray(0, n).toString(), 'read me');
      await call((cb) => r.close(h, cb));
    } finally {
      reader.end();
    }
  });
});
