import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client } from 'basic-ftp';
import type ssh2 from 'ssh2';
import { FXP, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { sluice } from './helpers/cli.js';
import { until } from './helpers/probe.js';
import { TestServer } from './helpers/server.js';
import { call, initialised, sftpOf, sshConnect } from './helpers/ssh.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
type Rec = Record<string, unknown>;

async function ftp(port: number, secure: boolean): Promise<Client> {
  const client = new Client(60_000);
  await client.access({ host: '127.0.0.1', port, user: 'alice', password: 'alice password', secure, secureOptions: { rejectUnauthorized: false } });
  return client;
}

async function ftpDownload(client: Client, path: string): Promise<Buffer> {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  await client.downloadTo(sink, path);
  return Buffer.concat(chunks);
}

/** The transfer records of one path, by direction. */
function transfers(records: Rec[], path: string, direction: 'upload' | 'download'): Rec[] {
  return records.filter((r) => r.event === direction && r.path === path);
}

/** wu-ftpd xferlog(5): a ctime date (5 blanks-separated words), then 13 fields. */
const XFERLOG = /^(\w{3} \w{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}) (\d+) (\S+) (\d+) (\S+) ([ab]) (_) ([io]) ([agr]) (\S+) (\S+) ([01]) (\S+) ([ci])$/;
const FIELDS = ['time', 'seconds', 'host', 'bytes', 'file', 'type', 'action', 'direction', 'access', 'user', 'service', 'auth', 'authUser', 'status'] as const;
function parseXferlog(text: string): Record<(typeof FIELDS)[number], string>[] {
  return text.split('\n').filter((l) => l !== '').map((line) => {
    const m = XFERLOG.exec(line);
    assert.ok(m, `not an xferlog line: ${line}`);
    return Object.fromEntries(FIELDS.map((f, i) => [f, m[i + 1]])) as Record<(typeof FIELDS)[number], string>;
  });
}

describe('audit trail of a running server', () => {
  let srv: TestServer;
  const data = randomBytes(3 * 1024 * 1024 + 17);
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\naudit:\n  xferlog: xferlog\n  hashResumedUploads: true\n',
      users: [
        { name: 'alice', password: 'alice password' },
        { name: 'olga', password: 'olga password', args: ['--quota-files', '1'] },
      ],
    });
  });
  after(() => srv.stop());

  it('FTP, FTPS and SFTP transfers each produce records whose SHA-256 equals the file\'s', async () => {
    for (const [name, secure] of [['plain.bin', false], ['tls.bin', true]] as const) {
      const c = await ftp(srv.ftpPort, secure);
      await c.uploadFrom(Readable.from([data]), name);
      assert.equal(sha256(await ftpDownload(c, name)), sha256(data));
      c.close();
    }
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    const sftp = await sftpOf(ssh);
    await new Promise<void>((resolve, reject) => {
      const w = sftp.createWriteStream('/ssh.bin');
      w.on('close', resolve).on('error', reject);
      w.end(data);
    });
    const back: Buffer[] = [];
    await new Promise<void>((resolve, reject) => sftp.createReadStream('/ssh.bin').on('data', (c: Buffer) => back.push(c)).on('end', resolve).on('error', reject));
    assert.equal(sha256(Buffer.concat(back)), sha256(data));
    ssh.end();

    // The six transfers' records, then the SFTP session's logout (written after its transfers'): a second
    // record of a transfer would have come by then.
    const records = await srv.auditUntilAll([
      ...['/plain.bin', '/tls.bin', '/ssh.bin'].flatMap((path) => (['upload', 'download'] as const).map((direction) => (r: Rec) => r.event === direction && r.path === path)),
      (r) => r.event === 'logout' && r.protocol === 'sftp' && r.user === 'alice',
    ]);
    for (const [path, protocol] of [['/plain.bin', 'ftp'], ['/tls.bin', 'ftps'], ['/ssh.bin', 'sftp']] as const) {
      assert.equal(sha256(readFileSync(join(srv.home('alice'), path))), sha256(data));
      for (const direction of ['upload', 'download'] as const) {
        const [rec, ...more] = transfers(records, path as string, direction);
        assert.ok(rec, `${direction} of ${path} recorded`);
        assert.equal(more.length, 0, `one record per ${direction}`);
        assert.equal(rec.protocol, protocol);
        assert.equal(rec.sha256, sha256(data), `${protocol} ${direction} hash`);
        assert.equal(rec.bytes, data.length);
        assert.equal(rec.size, data.length);
        assert.equal(rec.result, 'ok');
        assert.equal(rec.resumed, false);
        assert.equal(rec.user, 'alice');
        assert.equal(rec.ip, '127.0.0.1');
        assert.ok(Number(rec.port) > 0);
        assert.match(String(rec.session), /\S/);
        assert.ok(Date.parse(String(rec.started)) <= Date.parse(String(rec.time)));
        assert.equal(typeof rec.duration_ms, 'number');
      }
    }
  });

  it('a resumed upload records its offset, the hash of its bytes and (configured) the whole file\'s', async () => {
    const c = await ftp(srv.ftpPort, true);
    const half = 1024 * 1024 + 3;
    await c.uploadFrom(Readable.from([data.subarray(0, half)]), 'resumed.bin');
    await c.appendFrom(Readable.from([data.subarray(half)]), 'resumed.bin');
    c.close();
    const [rec] = transfers(await srv.auditWhen((all) => transfers(all, '/resumed.bin', 'upload').length >= 2), '/resumed.bin', 'upload').slice(1);
    assert.ok(rec);
    assert.equal(rec.resumed, true);
    assert.equal(rec.offset, half);
    assert.equal(rec.bytes, data.length - half);
    assert.equal(rec.size, data.length);
    assert.equal(rec.sha256, sha256(data.subarray(half)), 'the bytes of this transfer');
    assert.equal(rec.file_sha256, sha256(data), 'the whole file after it');
  });

  // lftp's `reput` over SFTP: the rest written at its offset through a handle opened without APPEND. Its record said
  // offset 0, not resumed, and no hash (the bytes held for a start that never came), nor the whole file's.
  it('an SFTP upload resumed at its offset through a handle opened without APPEND records the same', async () => {
    const half = 1024 * 1024 + 5;
    writeFileSync(join(srv.home('alice'), 'reput.bin'), data.subarray(0, half));
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const sftp = await sftpOf(ssh);
      const handle = await call<Buffer>((cb) => sftp.open('/reput.bin', 'r+', cb));
      for (let at = half; at < data.length; at += 32768) {
        await call((cb) => sftp.write(handle, data, at, Math.min(32768, data.length - at), at, cb));
      }
      await call((cb) => sftp.close(handle, cb));
    } finally {
      ssh.end();
    }
    const [rec] = transfers(await srv.auditWhen((all) => transfers(all, '/reput.bin', 'upload').length >= 1), '/reput.bin', 'upload');
    assert.deepEqual(
      [rec?.result, rec?.resumed, rec?.offset, rec?.bytes, rec?.size, rec?.sha256, rec?.file_sha256],
      ['ok', true, half, data.length - half, data.length, sha256(data.subarray(half)), sha256(data)],
    );
  });

  // Found by a review of Transfer.at(): a READ or WRITE that moved no bytes (empty, or a READ past the end of a
  // file cut meanwhile) took the record's offset below where the bytes hashed begin: offset 0, not resumed, beside
  // the hash of bytes read or written from 32 KiB on.
  it('an SFTP READ or WRITE that moves no bytes says nothing of where its transfer begins', async () => {
    const chunk = 32768;
    const file = join(srv.home('alice'), 'read-later.bin');
    writeFileSync(file, data.subarray(0, 4 * chunk));
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const { ch, next } = await initialised(ssh);
      const ask = async (packet: Buffer, type: number): Promise<Buffer> => {
        ch.write(packet);
        const reply = await next();
        assert.equal(reply[0], type);
        return reply;
      };
      const handle = (reply: Buffer) => reply.subarray(9, 9 + reply.readUInt32BE(5));
      const down = handle(await ask(new Writer(FXP.OPEN, 1).string('/read-later.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish(), FXP.HANDLE));
      await ask(new Writer(FXP.READ, 2).bytes(down).uint64(2 * chunk).uint32(2 * chunk).finish(), FXP.DATA);
      await ask(new Writer(FXP.READ, 3).bytes(down).uint64(0).uint32(0).finish(), FXP.STATUS);
      truncateSync(file, chunk);
      await ask(new Writer(FXP.READ, 4).bytes(down).uint64(chunk).uint32(chunk).finish(), FXP.STATUS);
      await ask(new Writer(FXP.CLOSE, 5).bytes(down).finish(), FXP.STATUS);
      // A resume: the rest written into the file as it is (a new or emptied file begins at 0, whatever comes first).
      writeFileSync(join(srv.home('alice'), 'write-later.bin'), data.subarray(0, chunk));
      const up = handle(await ask(new Writer(FXP.OPEN, 6).string('/write-later.bin').uint32(OPEN_FLAGS.WRITE).uint32(0).finish(), FXP.HANDLE));
      await ask(new Writer(FXP.WRITE, 7).bytes(up).uint64(chunk).bytes(data.subarray(chunk, 2 * chunk)).finish(), FXP.STATUS);
      await ask(new Writer(FXP.WRITE, 8).bytes(up).uint64(0).bytes(Buffer.alloc(0)).finish(), FXP.STATUS);
      await ask(new Writer(FXP.CLOSE, 9).bytes(up).finish(), FXP.STATUS);
    } finally {
      ssh.end();
    }
    const all = await srv.auditWhen((records) => transfers(records, '/write-later.bin', 'upload').length >= 1);
    const [down] = transfers(all, '/read-later.bin', 'download');
    const [up] = transfers(all, '/write-later.bin', 'upload');
    assert.deepEqual(
      [down?.result, down?.resumed, down?.offset, down?.bytes, down?.sha256],
      ['ok', true, 2 * chunk, 2 * chunk, sha256(data.subarray(2 * chunk, 4 * chunk))],
      JSON.stringify(down),
    );
    assert.deepEqual(
      [up?.result, up?.resumed, up?.offset, up?.bytes, up?.size, up?.sha256],
      ['ok', true, chunk, chunk, 2 * chunk, sha256(data.subarray(chunk, 2 * chunk))],
      JSON.stringify(up),
    );
  });

  // The trail's order is the order things were done: a download's CLOSE is answered before its line is
  // chained (AuditLog.chainTaken), and what the client does next must not be chained before it. A SETSTAT
  // of the owner is refused and recorded with no trip to the file system, in the very turn the CLOSE's reply
  // lets it run (the channel holds a request by path behind a CLOSE of that path); sent once the reply came,
  // it is the client's next request.
  it('a download\'s record precedes the records of the requests after its CLOSE, pipelined or not', async () => {
    writeFileSync(join(srv.home('alice'), 'order.dat'), data.subarray(0, 1000));
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const { ch, next } = await initialised(ssh);
      const status = (reply: Buffer) => [reply[0], reply.readUInt32BE(5)];
      const chown = (id: number) => new Writer(FXP.SETSTAT, id).string('/order.dat').attrs({ uid: 0, gid: 0 }).finish();
      let id = 0;
      const download = async (): Promise<Buffer> => {
        ch.write(new Writer(FXP.OPEN, ++id).string('/order.dat').uint32(OPEN_FLAGS.READ).uint32(0).finish());
        const reply = await next();
        assert.equal(reply[0], FXP.HANDLE);
        const handle = reply.subarray(9, 9 + reply.readUInt32BE(5));
        ch.write(new Writer(FXP.READ, ++id).bytes(handle).uint64(0).uint32(1000).finish());
        assert.equal((await next())[0], FXP.DATA);
        return handle;
      };
      for (let round = 0; round < 3; round++) {
        ch.write(Buffer.concat([new Writer(FXP.CLOSE, ++id).bytes(await download()).finish(), chown(++id)]));
        assert.deepEqual([status(await next()), status(await next())], [[FXP.STATUS, 0], [FXP.STATUS, 3]]);
        ch.write(new Writer(FXP.CLOSE, ++id).bytes(await download()).finish());
        assert.deepEqual(status(await next()), [FXP.STATUS, 0]);
        ch.write(chown(++id));
        assert.deepEqual(status(await next()), [FXP.STATUS, 3]);
      }
    } finally {
      ssh.end();
    }
    const mine = (r: Rec) => r.path === '/order.dat' && (r.event === 'download' || (r.event === 'denied' && r.operation === 'chown'));
    const records = await srv.auditWhen((all) => all.filter(mine).length >= 12);
    const events = records.filter(mine).sort((a, b) => (a.seq as number) - (b.seq as number)).map((r) => r.event);
    assert.deepEqual(events, Array(6).fill(['download', 'denied']).flat());
  });

  it('an SFTP upload cut off by a disconnect is recorded as aborted, with its bytes and their hash', async () => {
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    const sftp = await sftpOf(ssh);
    const handle = await call<Buffer>((cb) => sftp.open('/cut.bin', 'w', cb));
    const sent = data.subarray(0, 5 * 32768);
    for (let at = 0; at < sent.length; at += 32768) {
      await call((cb) => sftp.write(handle, sent, at, 32768, at, cb));
    }
    ssh.end();
    const [rec] = transfers(await srv.auditUntil((r) => r.event === 'upload' && r.path === '/cut.bin'), '/cut.bin', 'upload');
    assert.equal(rec?.result, 'aborted');
    assert.equal(rec?.bytes, sent.length);
    assert.equal(rec?.sha256, sha256(sent));
    assert.ok(!existsSync(join(srv.home('alice'), 'cut.bin')), 'an atomic upload leaves no partial file');
  });

  it('a file cut or extended by its name (SFTP SETSTAT size) is recorded with its sizes', async () => {
    // Found by an adversarial review: the bytes of a file changed with no record at all.
    writeFileSync(join(srv.home('alice'), 'cut-me.txt'), 'some words to lose');
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    const sftp = await sftpOf(ssh);
    await call((cb) => sftp.setstat('/cut-me.txt', { size: 0 } as ssh2.InputAttributes, cb));
    await call((cb) => sftp.setstat('/cut-me.txt', { size: 5000 } as ssh2.InputAttributes, cb));
    ssh.end();
    // The session's logout comes after both cuts' records (and any third one).
    const cuts = (
      await srv.auditWhen((all) => {
        const session = all.find((r) => r.event === 'truncate' && r.path === '/cut-me.txt')?.session;
        return session !== undefined && all.some((r) => r.event === 'logout' && r.session === session);
      })
    ).filter((r) => r.event === 'truncate');
    assert.deepEqual(cuts.map((r) => [r.user, r.path, r.was, r.size]), [['alice', '/cut-me.txt', 18, 0], ['alice', '/cut-me.txt', 0, 5000]]);
  });

  it('refusals with no permission rule behind them, and quota refusals before any transfer, are recorded too', async () => {
    // Found by an adversarial review: rmdir or rename of the home and a mkdir over the file quota left no record.
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'olga', password: 'olga password' });
    const sftp = await sftpOf(ssh);
    await assert.rejects(call((cb) => sftp.rmdir('/', cb)));
    await assert.rejects(call((cb) => sftp.rename('/', '/elsewhere', cb)));
    await call((cb) => sftp.mkdir('/first', cb));
    await assert.rejects(call((cb) => sftp.mkdir('/second', cb)));
    await assert.rejects(call((cb) => sftp.setstat('/first', { uid: 0, gid: 0 } as ssh2.InputAttributes, cb)), /owner/);
    ssh.end();
    // Her session's logout comes after all its refusals.
    const mine = (await srv.auditUntil((r) => r.event === 'logout' && r.user === 'olga')).filter((r) => r.user === 'olga');
    const denied = mine.filter((r) => r.event === 'denied').map((r) => [r.operation, r.path]);
    assert.deepEqual(denied, [['rmdir', '/'], ['rename', '/'], ['chown', '/first']]);
    assert.deepEqual(mine.filter((r) => r.event === 'quota-exceeded').map((r) => r.path), ['/second']);
  });

  it('writes the transfers to the xferlog too, in fields analysers parse', async () => {
    const c = await ftp(srv.ftpPort, true);
    await c.uploadFrom(Readable.from([Buffer.from('a\nb\n')]), 'name with spaces.txt');
    await c.send('TYPE A');
    await ftpDownload(c, 'name with spaces.txt');
    c.close();
    // The xferlog is flushed on its own timer: until the last line read below is in it.
    const xferlog = join(srv.dir, 'data', 'xferlog');
    await until(10_000, async () => / \/name_with_spaces\.txt a _ o .*\n/.test(readFileSync(xferlog, 'utf8')));
    const lines = parseXferlog(readFileSync(join(srv.dir, 'data', 'xferlog'), 'utf8'));
    const mine = (file: string, direction: string) => lines.filter((l) => l.file === file && l.direction === direction);
    const [up] = mine('/plain.bin', 'i');
    assert.deepEqual(
      { ...up, time: undefined, seconds: undefined },
      { time: undefined, seconds: undefined, host: '127.0.0.1', bytes: String(data.length), file: '/plain.bin', type: 'b', action: '_', direction: 'i', access: 'r', user: 'alice', service: 'ftp', auth: '0', authUser: '*', status: 'c' },
    );
    assert.ok(Math.abs(Date.parse(up?.time ?? '') - Date.now()) < 120_000, `local ctime: ${up?.time}`);
    assert.ok(Number(up?.seconds) >= 1);
    assert.equal(mine('/ssh.bin', 'o')[0]?.service, 'sftp');
    assert.equal(mine('/tls.bin', 'o')[0]?.service, 'ftps');
    // A blank in a name must not shift the fields; TYPE A is recorded as such.
    const [ascii] = mine('/name_with_spaces.txt', 'o');
    assert.equal(ascii?.type, 'a');
    assert.equal(ascii?.bytes, '4', 'bytes of the file, before the CRLF conversion');
  });

  it('SIGHUP after logrotate moved the logs: new files, the chain continuing, queries spanning both', async () => {
    const dir = join(srv.dir, 'data');
    renameSync(join(dir, 'audit.log'), join(dir, 'audit.log.1'));
    renameSync(join(dir, 'xferlog'), join(dir, 'xferlog.1'));
    srv.signal('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    const c = await ftp(srv.ftpPort, true);
    await c.uploadFrom(Readable.from([Buffer.from('after rotation')]), 'after.txt');
    c.close();
    const records = await srv.auditUntil((r) => r.event === 'upload' && r.path === '/after.txt');
    // The transfer's xferlog line, flushed on its own timer.
    await until(10_000, async () => existsSync(join(dir, 'xferlog')) && readFileSync(join(dir, 'xferlog'), 'utf8') !== '');
    assert.equal(records[0]?.event, 'audit-rotated');
    assert.ok(transfers(records, '/after.txt', 'upload')[0], 'the new record is in the new file');
    assert.ok(existsSync(join(dir, 'xferlog')), 'a new xferlog');
    assert.equal(parseXferlog(readFileSync(join(dir, 'xferlog'), 'utf8')).length, 1);
    const verify = sluice(srv.dir, ['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const q = sluice(srv.dir, ['audit', 'query', '--json', '--user', 'alice', '--path', '/*.bin']);
    const paths = new Set(q.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Rec).path));
    assert.deepEqual([...paths].sort(), ['/cut.bin', '/plain.bin', '/read-later.bin', '/reput.bin', '/resumed.bin', '/ssh.bin', '/tls.bin', '/write-later.bin'], 'records from the rotated file too');
  });
});

describe('audit trail after a crash', () => {
  it('a killed server loses at most the last second, and what it wrote still verifies', async () => {
    const srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    try {
      const c = await ftp(srv.ftpPort, true);
      await c.ensureDir('/kept');
      const before = await srv.audit(1500);
      assert.ok(before.some((r) => r.event === 'mkdir' && r.path === '/kept'), 'on disk within the second');
      const exited = new Promise((r) => srv.process?.once('exit', r));
      srv.signal('SIGKILL');
      await exited;
      c.close();
      const verify = sluice(srv.dir, ['audit', 'verify']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.deepEqual(
        (await srv.audit(0)).slice(0, before.length),
        before,
        'nothing written before the crash is altered',
      );
    } finally {
      await srv.stop();
    }
  });
});

describe('audit trail switched off', () => {
  it('records and hashes nothing, and says so at start', async () => {
    const srv = await TestServer.start({ yaml: 'audit:\n  enabled: false\n', users: [{ name: 'alice', password: 'alice password' }] });
    try {
      const c = await ftp(srv.ftpPort, true);
      await c.uploadFrom(Readable.from([Buffer.from('x')]), 'x.txt');
      c.close();
      await new Promise((r) => setTimeout(r, 1200));
      assert.ok(!existsSync(join(srv.dir, 'data', 'audit.log')));
      assert.match(srv.log, /audit trail disabled/);
    } finally {
      await srv.stop();
    }
  });
});
