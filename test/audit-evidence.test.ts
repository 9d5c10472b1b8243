import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ATTR, FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, initialised, sftpOf, sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** What a review of the audit trail as evidence found: records that did not match what happened. */
describe('audit evidence: a transfer record describes the bytes that moved', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'eve', password: 'eve password', args: ['--perms', 'all'] }] });
  });
  after(() => srv.stop());

  it('an SFTP region written twice while its hash waited for a gap: no hash that is not the file, no receipt that lies', async () => {
    // 128 KiB at 1 MiB, then 64 KiB at the same offset (the hash still waits for 0-1 MiB and holds the
    // first by its offset), then 0-1 MiB, then the file extended to as many bytes as were sent.
    const a = randomBytes(128 * 1024);
    const b = randomBytes(64 * 1024);
    const z = randomBytes(MiB);
    const sent = a.length + b.length + z.length;
    const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    try {
      const { ch, next } = await initialised(conn);
      let id = 1;
      const ask = async (w: Writer) => {
        ch.write(w.finish());
        const reply = await next();
        return reply;
      };
      const opened = await ask(new Writer(FXP.OPEN, id++).string('/twice.bin').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0));
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      const ok = async (w: Writer) => assert.equal((await ask(w)).readUInt32BE(5), STATUS.OK);
      await ok(new Writer(FXP.WRITE, id++).bytes(handle).uint64(MiB).bytes(a));
      await ok(new Writer(FXP.WRITE, id++).bytes(handle).uint64(MiB).bytes(b));
      for (let at = 0; at < MiB; at += 128 * 1024) await ok(new Writer(FXP.WRITE, id++).bytes(handle).uint64(at).bytes(z.subarray(at, at + 128 * 1024)));
      await ok(new Writer(FXP.FSETSTAT, id++).bytes(handle).uint32(ATTR.SIZE).uint64(sent));
      await ok(new Writer(FXP.CLOSE, id++).bytes(handle));
    } finally {
      conn.end();
    }
    const file = readFileSync(join(srv.home('eve'), 'twice.bin'));
    assert.equal(file.length, sent);
    const rec = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/twice.bin')).find((l) => l.event === 'upload' && l.path === '/twice.bin');
    assert.equal(rec?.result, 'ok');
    assert.equal(rec?.bytes, sent);
    assert.ok(rec?.sha256 === null || rec?.sha256 === sha256(file), `recorded ${String(rec?.sha256)}, the hash of ${sha256(Buffer.concat([z, b])) === rec?.sha256 ? '0-1 MiB and the second write only' : 'something else'}`);
    // HASH must describe the file, not a receipt of bytes it does not hold.
    const ftp = await RawFtp.connect(srv.ftpPort);
    try {
      await ftp.read();
      assert.equal((await ftp.login('eve', 'eve password')).code, 230);
      assert.equal((await ftp.cmd('HASH /twice.bin')).text, `213 SHA-256 0-${file.length} ${sha256(file)} /twice.bin`);
    } finally {
      ftp.socket.destroy();
    }
  });

  it('an SFTP download that reads one offset twice while its hash waited: the record hashes no bytes it did not send in order', async () => {
    const data = randomBytes(3 * 65536);
    writeFileSync(join(srv.home('eve'), 'read-twice.bin'), data);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    try {
      const sftp = await sftpOf(conn);
      const h = await call<Buffer>((cb) => sftp.open('/read-twice.bin', 'r', cb));
      const buf = Buffer.alloc(65536);
      // 64 KiB at 64 KiB, then 1 KiB at 64 KiB (both wait for 0), then 0-64 KiB.
      await call<number>((cb) => sftp.read(h, buf, 0, 65536, 65536, (err, n) => cb(err, n)));
      await call<number>((cb) => sftp.read(h, buf, 0, 1024, 65536, (err, n) => cb(err, n)));
      await call<number>((cb) => sftp.read(h, buf, 0, 65536, 0, (err, n) => cb(err, n)));
      await call((cb) => sftp.close(h, cb));
    } finally {
      conn.end();
    }
    const rec = (await srv.auditUntil((l) => l.event === 'download' && l.path === '/read-twice.bin')).find(
      (l) => l.event === 'download' && l.path === '/read-twice.bin',
    );
    assert.equal(rec?.bytes, 2 * 65536 + 1024);
    // The hash of 0-65 KiB would say the client got 65 KiB in file order; it got 128 KiB, 64 KiB-65 KiB twice.
    assert.equal(rec?.sha256, null, `recorded ${String(rec?.sha256)}`);
  });
  it('SFTP check-file over ranges of a few bytes reads a file as a download would: the trail says who read it', async () => {
    // The SHA-256 of one byte is one of 256: range by range, a client learns the file without a download.
    const secret = Buffer.from('the secret plan: 42');
    writeFileSync(join(srv.home('eve'), 'secret.txt'), secret);
    const table = new Map<string, number>();
    for (let b = 0; b < 256; b++) table.set(sha256(Buffer.from([b])), b);
    const learned: number[] = [];
    const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    try {
      const { ch, next } = await initialised(conn);
      for (let at = 0; at < secret.length; at++) {
        ch.write(new Writer(FXP.EXTENDED, 100 + at).string('check-file-name').string('/secret.txt').string('sha256').uint64(at).uint64(1).uint32(0).finish());
        const reply = await next();
        assert.equal(reply[0], FXP.EXTENDED_REPLY);
        const digest = reply.subarray(reply.length - 32).toString('hex');
        learned.push(table.get(digest) ?? -1);
      }
    } finally {
      conn.end();
    }
    assert.deepEqual(Buffer.from(learned), secret, 'the file, byte by byte');
    const named = (l: Record<string, unknown>) => l.user === 'eve' && l.path === '/secret.txt';
    const records = (await srv.auditUntil(named, 3000)).filter((l) => l.user === 'eve' && (l.path === '/secret.txt' || l.from === '/secret.txt'));
    assert.ok(records.length > 0, 'no record names /secret.txt: its content left the server without a trace');
  });
});
