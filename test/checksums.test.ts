import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, rmSync, statSync, utimesSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { runParamiko } from './helpers/paramiko.js';
import type ssh2 from 'ssh2';
import { call, initialised, sftpOf, sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** What sha256sum(1) says of a file. */
const sha256sum = (file: string) => spawnSync('sha256sum', [file], { encoding: 'utf8' }).stdout.split(' ')[0];

describe('checksums: FTP HASH / XSHA256, SFTP check-file-name / check-file-handle / check-file', () => {
  let srv: TestServer;
  let local: string;
  let ftp: RawFtp;
  const up = randomBytes(3 * MiB + 5);

  before(async () => {
    local = mkdtempSync(join(tmpdir(), 'sluice-hash-'));
    srv = await TestServer.start({
      // A low hashing rate, so a checksum that reads the file shows it in its time.
      yaml: 'ftp:\n  tls: optional\nlimits:\n  hashRate: 4M\n',
      users: [
        { name: 'alice', password: 'alice password' },
        { name: 'drop', password: 'drop password', args: ['--perms', 'upload'] },
        { name: 'slow', password: 'slow password', args: ['--rate-down', '256K'] },
      ],
    });
    writeFileSync(join(local, 'up.bin'), up);
    const r = spawnSync('curl', ['-sS', '-T', join(local, 'up.bin'), `ftp://alice:alice%20password@127.0.0.1:${srv.ftpPort}/up.bin`]);
    assert.equal(r.status, 0, String(r.stderr));
    ftp = await RawFtp.connect(srv.ftpPort);
    assert.equal((await ftp.read())?.code, 220);
    assert.equal((await ftp.login('alice', 'alice password')).code, 230);
  });
  after(async () => {
    ftp?.socket.destroy();
    await srv?.stop();
    rmSync(local, { recursive: true, force: true });
  });

  it('FEAT announces HASH; OPTS HASH selects SHA-256 and nothing else', async () => {
    assert.match((await ftp.cmd('FEAT')).text, /^ HASH SHA-256\*$/m);
    assert.equal((await ftp.cmd('OPTS HASH')).text, '200 SHA-256');
    assert.equal((await ftp.cmd('OPTS HASH SHA-256')).code, 200);
    assert.equal((await ftp.cmd('OPTS HASH MD5')).code, 504);
  });

  it('a file just uploaded is answered from its upload record, without reading it', async () => {
    const file = join(srv.home('alice'), 'up.bin');
    const t0 = performance.now();
    const r = await ftp.cmd('HASH /up.bin');
    assert.ok(performance.now() - t0 < 500, 'no read at 4 MiB/s');
    assert.equal(r.text, `213 SHA-256 0-${up.length} ${sha256(up)} /up.bin`);
    // Bytes changed and the old mtime set back (a review did it through SFTP: a write in place, then
    // SETSTAT times) leave size and mtime as the record has them: the file's ctime says it changed.
    const { mtime } = statSync(file);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from('changed'), 0, 7, 0);
    closeSync(fd);
    utimesSync(file, mtime, mtime);
    assert.equal(statSync(file).mtime.getTime(), mtime.getTime());
    assert.equal((await ftp.cmd('XSHA256 up.bin')).text, `250 ${sha256sum(file)}`);
    assert.notEqual(sha256sum(file), sha256(up));
  });

  it('an SFTP upload cut short (FSETSTAT size) and written past the cut: neither the record nor HASH vouches for bytes the file lacks', async () => {
    // Written 0-100, cut to 50, written at 100: the file holds a hole of zeros the bytes sent never had.
    const a = randomBytes(100);
    const b = randomBytes(50);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const sftp = await sftpOf(conn);
      const h = await call<Buffer>((cb) => sftp.open('/cut.bin', 'w', cb));
      await call((cb) => sftp.write(h, a, 0, 100, 0, cb));
      await call((cb) => sftp.fsetstat(h, { size: 50 } as ssh2.InputAttributes, cb));
      await call((cb) => sftp.write(h, b, 0, 50, 100, cb));
      await call((cb) => sftp.close(h, cb));
    } finally {
      conn.end();
    }
    const file = join(srv.home('alice'), 'cut.bin');
    assert.equal(statSync(file).size, 150);
    const record = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/cut.bin')).find((l) => l.event === 'upload' && l.path === '/cut.bin');
    assert.equal(record?.result, 'ok');
    assert.equal(record?.sha256, null, 'no hash of the bytes sent, which are not the file');
    assert.equal((await ftp.cmd('XSHA256 cut.bin')).text, `250 ${sha256sum(file)}`);
  });

  // Found by a review: an upload in place was remembered with the file's ctime at its end, and its bytes'
  // hash as the file's. Another writer wrote the file over meanwhile (then another user sharing the home:
  // the in-place lock was each user's; now it is the node's, but a user of the home on another node, or
  // a program outside sluice, still can): HASH answered alice's hash of bytes the file no longer held.
  it('an upload in place written over meanwhile by another writer: HASH tells what the file holds', async () => {
    const file = join(srv.home('alice'), 'shared.bin');
    const size = 64 * 1024;
    writeFileSync(file, Buffer.alloc(size));
    const [a, b] = [randomBytes(size), randomBytes(size)];
    const alice = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const sa = await sftpOf(alice);
      // r+: WRITE without CREAT or TRUNC, so the upload writes the file where it lies.
      const ha = await call<Buffer>((cb) => sa.open('/shared.bin', 'r+', cb));
      await call((cb) => sa.write(ha, a, 0, size, 0, cb));
      // The other writer, after alice's bytes and before her CLOSE (whose look at the file sees its ctime).
      const fd = openSync(file, 'r+');
      writeSync(fd, b, 0, size, 0);
      closeSync(fd);
      await call((cb) => sa.close(ha, cb));
    } finally {
      alice.end();
    }
    assert.equal(sha256sum(file), sha256(b));
    assert.equal((await ftp.cmd('HASH /shared.bin')).text, `213 SHA-256 0-${size} ${sha256(b)} /shared.bin`);
  });

  it('any other file is read at the session hashing rate, and matches sha256sum', async () => {
    const file = join(srv.home('alice'), 'disk.bin');
    writeFileSync(file, randomBytes(10 * MiB));
    const t0 = performance.now();
    const r = await ftp.cmd('HASH disk.bin');
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(r.text, `213 SHA-256 0-${10 * MiB} ${sha256sum(file)} disk.bin`);
    assert.ok(seconds > 2, `10 MiB at 4 MiB/s took ${seconds.toFixed(2)} s`);
  });

  // Found by a review: a user limited to 256 KiB/s down had the server read for HASH at limits.hashRate,
  // so anonymous sessions could make it read at ten times 128 MiB/s by asking again and again.
  it("a user's download rate bounds its hashing too: a checksum is a read", async () => {
    writeFileSync(join(srv.home('slow'), 'half.bin'), randomBytes(512 * 1024));
    const c = await RawFtp.connect(srv.ftpPort);
    try {
      await c.read();
      assert.equal((await c.login('slow', 'slow password')).code, 230);
      const t0 = performance.now();
      assert.equal((await c.cmd('HASH half.bin')).code, 213);
      const seconds = (performance.now() - t0) / 1000;
      assert.ok(seconds > 1.5, `512 KiB at 256 KiB/s took ${seconds.toFixed(2)} s`);
    } finally {
      c.socket.destroy();
    }
  });

  it('refusals: no file, a directory, no download right (a drop box gives no hashes)', async () => {
    assert.equal((await ftp.cmd('HASH /missing')).code, 550);
    assert.equal((await ftp.cmd('HASH /')).code, 550);
    const d = await RawFtp.connect(srv.ftpPort);
    await d.read();
    await d.login('drop', 'drop password');
    assert.equal((await d.cmd('STOR x')).code, 425, 'the drop user may store (no data connection here)');
    writeFileSync(join(srv.home('drop'), 'secret.bin'), 'secret');
    assert.equal((await d.cmd('HASH secret.bin')).code, 550);
    d.socket.destroy();
  });

  // Found by a review: the refusal went unrecorded (no `denied` record), as the checksum of a path's is.
  it("SFTP check-file-handle of a drop box's upload: refused, and the refusal is on record", async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'drop', password: 'drop password' });
    try {
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/dropped.bin').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0).finish());
      const open = await next();
      assert.equal(open[0], FXP.HANDLE);
      const handle = open.subarray(9, 9 + open.readUInt32BE(5));
      ch.write(new Writer(FXP.WRITE, 2).bytes(handle).uint64(0).bytes(Buffer.from('dropped')).finish());
      assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      ch.write(new Writer(FXP.EXTENDED, 3).string('check-file-handle').bytes(handle).string('sha256').uint64(0).uint64(0).uint32(0).finish());
      const reply = await next();
      assert.equal(reply[0], FXP.STATUS);
      assert.equal(reply.readUInt32BE(5), STATUS.PERMISSION_DENIED);
    } finally {
      conn.end();
    }
    const denied = (r: Record<string, unknown>) => r.event === 'denied' && r.operation === 'checksum' && r.user === 'drop' && r.path === '/dropped.bin';
    assert.ok((await srv.auditUntil(denied, 5000)).some(denied), 'a denied checksum record');
  });

  it('SFTP check-file-handle of a file written in place: a clear refusal (no read through that handle), not a failed read', async () => {
    writeFileSync(join(srv.home('alice'), 'inplace.bin'), 'in place');
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const { ch, next } = await initialised(conn);
      // WRITE without CREAT or TRUNC: written where it lies, its descriptor open for writing only.
      ch.write(new Writer(FXP.OPEN, 1).string('/inplace.bin').uint32(OPEN_FLAGS.WRITE).uint32(0).finish());
      const open = await next();
      assert.equal(open[0], FXP.HANDLE);
      const handle = open.subarray(9, 9 + open.readUInt32BE(5));
      ch.write(new Writer(FXP.EXTENDED, 2).string('check-file-handle').bytes(handle).string('sha256').uint64(0).uint64(0).uint32(0).finish());
      const reply = await next();
      assert.equal(reply[0], FXP.STATUS);
      assert.equal(reply.readUInt32BE(5), STATUS.OP_UNSUPPORTED);
      assert.match(reply.subarray(13, 13 + reply.readUInt32BE(9)).toString(), /not open for reading/);
    } finally {
      conn.end();
    }
  });

  it('SFTP check-file-name and check-file-handle: whole files and blocks, raw requests', async () => {
    const file = join(srv.home('alice'), 'blocks.bin');
    const data = randomBytes(Math.floor(2.5 * MiB));
    writeFileSync(file, data);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const { ch, next } = await initialised(conn);
      const check = async (head: Writer, offset: number, length: number, block: number) => {
        ch.write(head.string('sha256,md5').uint64(offset).uint64(length).uint32(block).finish());
        return next();
      };
      const parse = (reply: Buffer) => {
        assert.equal(reply[0], FXP.EXTENDED_REPLY, `status ${reply.readUInt32BE(5)}`);
        let at = 5;
        const str = () => {
          const n = reply.readUInt32BE(at);
          const s = reply.subarray(at + 4, at + 4 + n).toString();
          at += 4 + n;
          return s;
        };
        assert.equal(str(), 'check-file');
        assert.equal(str(), 'sha256');
        return reply.subarray(at);
      };
      let r = parse(await check(new Writer(FXP.EXTENDED, 1).string('check-file-name').string('/blocks.bin'), 0, 0, 0));
      assert.equal(r.toString('hex'), sha256(data));
      r = parse(await check(new Writer(FXP.EXTENDED, 2).string('check-file-name').string('/blocks.bin'), 0, 0, MiB));
      assert.equal(r.toString('hex'), [0, 1, 2].map((i) => sha256(data.subarray(i * MiB, (i + 1) * MiB))).join(''));
      r = parse(await check(new Writer(FXP.EXTENDED, 3).string('check-file-name').string('/blocks.bin'), 1000, 5000, 0));
      assert.equal(r.toString('hex'), sha256(data.subarray(1000, 6000)));
      // Through a handle.
      ch.write(new Writer(FXP.OPEN, 4).string('/blocks.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
      const open = await next();
      const handle = open.subarray(9, 9 + open.readUInt32BE(5));
      r = parse(await check(new Writer(FXP.EXTENDED, 5).string('check-file-handle').bytes(handle), 0, 0, 0));
      assert.equal(r.toString('hex'), sha256(data));
      // Refused: an algorithm list without sha256, blocks too small, too many blocks.
      ch.write(new Writer(FXP.EXTENDED, 6).string('check-file-name').string('/blocks.bin').string('md5').uint64(0).uint64(0).uint32(0).finish());
      assert.equal((await next()).readUInt32BE(5), STATUS.OP_UNSUPPORTED);
      for (const [id, block] of [[7, 100], [8, 256]] as const) {
        ch.write(new Writer(FXP.EXTENDED, id).string('check-file-name').string('/blocks.bin').string('sha256').uint64(0).uint64(0).uint32(block).finish());
        const reply = await next();
        assert.equal(reply[0], FXP.STATUS);
        assert.equal(reply.readUInt32BE(5), STATUS.FAILURE);
      }
    } finally {
      conn.end();
    }
  });

  // Found by a review: each SSH channel hashed at limits.hashRate of its own, so ten channels of one
  // connection read at ten times the rate. A connection's channels now take turns at one rate.
  it('SFTP channels of one connection hash in turns at one rate: 2 × 4 MiB on two channels take 2 s at 4 MiB/s', async () => {
    const data = randomBytes(4 * MiB);
    writeFileSync(join(srv.home('alice'), 'turns.bin'), data);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const channels = await Promise.all([initialised(conn), initialised(conn)]);
      const t0 = performance.now();
      const replies = await Promise.all(
        channels.map(({ ch, next }) => {
          ch.write(new Writer(FXP.EXTENDED, 1).string('check-file-name').string('/turns.bin').string('sha256').uint64(0).uint64(0).uint32(0).finish());
          return next();
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      for (const reply of replies) {
        assert.equal(reply[0], FXP.EXTENDED_REPLY);
        assert.equal(reply.subarray(reply.length - 32).toString('hex'), sha256(data));
      }
      // 8 MiB at 4 MiB/s less the first burst (0.4 MiB): 1.9 s; each channel at its own rate took 1 s.
      assert.ok(seconds >= 1.7, `both checksums took ${seconds.toFixed(2)} s`);
    } finally {
      conn.end();
    }
  });

  it("paramiko's SFTPFile.check() (check-file) equals sha256sum", (t) => {
    const script = `
import paramiko, sys
t = paramiko.Transport(('127.0.0.1', int(sys.argv[1])))
t.connect(username='alice', password='alice password')
s = paramiko.SFTPClient.from_transport(t)
with s.open('/up.bin') as f:
    print(f.check('sha256').hex())
t.close()
`;
    const out = runParamiko(t, script, srv.sftpPort);
    if (out === null) return;
    assert.equal(out.trim(), sha256sum(join(srv.home('alice'), 'up.bin')));
  });
});

// Found by a review: the idle timeout counted a checksum under way as idleness, and cut it unanswered.
describe('a checksum that takes longer than the idle timeout', () => {
  it('is answered, over FTP (HASH) and SFTP (check-file-name): a client waiting for its hash is not idle', async () => {
    const srv = await TestServer.start({
      users: [{ name: 'alice', password: 'alice password' }],
      yaml: 'limits:\n  hashRate: 1M\nftp:\n  tls: optional\n  idleTimeout: 10\nsftp:\n  idleTimeout: 10\n',
    });
    try {
      // 12 s of reading at the hashing rate (each connection has its own).
      const data = randomBytes(12 * MiB);
      writeFileSync(join(srv.home('alice'), 'big.bin'), data);
      const ftp = await RawFtp.connect(srv.ftpPort);
      await ftp.read();
      assert.equal((await ftp.login('alice', 'alice password')).code, 230);
      const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      const { ch, next } = await initialised(conn);
      const started = Date.now();
      ftp.send('HASH big.bin\r\n');
      ch.write(new Writer(FXP.EXTENDED, 1).string('check-file-name').string('/big.bin').string('sha256').uint64(0).uint64(0).uint32(0).finish());
      // The SFTP reply, or null once the connection is gone.
      const replied = new Promise<Buffer | null>((resolve) => {
        void next().then(resolve);
        conn.once('close', () => resolve(null));
      });
      const [hash, check] = await Promise.all([ftp.read(30_000), replied]);
      assert.ok(Date.now() - started > 10_000, 'read at the hashing rate');
      assert.equal(hash?.text, `213 SHA-256 0-${data.length} ${sha256(data)} big.bin`);
      assert.ok(check, 'SFTP: connection closed unanswered');
      assert.equal(check[0], FXP.EXTENDED_REPLY);
      assert.equal(check.subarray(check.length - 32).toString('hex'), sha256(data));
      // Both serve on.
      assert.equal((await ftp.cmd('NOOP')).code, 200);
      ftp.close();
      conn.end();
    } finally {
      await srv.stop();
    }
  });
});
