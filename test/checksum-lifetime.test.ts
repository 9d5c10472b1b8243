import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HashingTurns, SessionChecksums } from '../src/session/checksum.js';
import { FXP, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The server and its workers (SLUICE_TEST_WORKERS): sessions run in whichever process took the connection. */
function processes(srv: TestServer): number[] {
  const pid = srv.pid as number;
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  return [pid, ...children];
}

/** Descriptors the server's processes hold on `file` right now. */
function opened(srv: TestServer, file: string): number {
  let n = 0;
  for (const pid of processes(srv)) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) n++;
      } catch {
        // Closed between the listing and the look.
      }
    }
  }
  return n;
}

/** CPU the server's processes have used, in clock ticks (100 a core-second). */
function cpuTicks(srv: TestServer): number {
  let ticks = 0;
  for (const pid of processes(srv)) {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks;
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(50);
  }
}

/**
 * The server goes quiet: some whole second within `ms` in which it used less
 * than a fifth of a core. Hashing at the default 128 MiB/s takes most of one;
 * an idle server a tick or two. Looked for, not measured once: on a loaded
 * machine a second of the server's own housekeeping may land in a window.
 */
async function quiet(srv: TestServer, ms: number): Promise<void> {
  const end = Date.now() + ms;
  let last = -1;
  while (Date.now() < end) {
    const t0 = cpuTicks(srv);
    await sleep(1000);
    last = cpuTicks(srv) - t0;
    if (last < 20) return;
  }
  assert.fail(`the server still used ${last} ticks a second after ${ms} ms: something hashes for a client that is gone`);
}

/**
 * A checksum ends with its session. A client that asks for the hash of a
 * large file and goes away must not leave the server reading it at the
 * hashing rate, its descriptor open (200 GiB at the default 128 MiB/s: about
 * 27 minutes), as often as it reconnects: the sessions limit counts live
 * sessions only. And one session hashes one file at a time, however many
 * requests an SFTP client pipelines.
 */
describe('checksums end with their session, and run one at a time', () => {
  let srv: TestServer;
  let big: string;
  /** Another such file, for the stop: its descriptor is the stop's checksum's alone. */
  let other: string;

  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'carol', password: 'carol password' }] });
    // Sparse: no disk, all the reading the server cares to do (the default hashing rate, 128 MiB/s).
    big = join(srv.home('carol'), 'big');
    other = join(srv.home('carol'), 'other');
    for (const file of [big, other]) {
      writeFileSync(file, '');
      truncateSync(file, 200 * 2 ** 30);
    }
  });
  after(() => srv?.stop());

  it('FTP: a client that sends HASH and goes away leaves no hashing behind', { timeout: 60_000 }, async () => {
    for (let round = 0; round < 2; round++) {
      const ftp = await RawFtp.connect(srv.ftpPort);
      assert.equal((await ftp.read())?.code, 220);
      assert.equal((await ftp.login('carol', 'carol password')).code, 230);
      ftp.socket.write('HASH big\r\n');
      await until('the server opens the file to hash it', () => opened(srv, big) === 1, 10_000);
      ftp.socket.destroy();
      await until('the server closes the file once the client is gone', () => opened(srv, big) === 0, 5_000);
    }
    await quiet(srv, 10_000);
  });

  it('SFTP: pipelined check-file requests are answered in turn, one file open at a time, none once the channel is gone', { timeout: 60_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
    try {
      const { ch, next } = await initialised(conn);
      const check = (id: number, offset: number, length: number) =>
        ch.write(new Writer(FXP.EXTENDED, id).string('check-file-name').string('/big').string('sha256').uint64(offset).uint64(length).uint32(0).finish());
      // Two that end, waiting for each other: both answered, in order, with the hash of their zeros.
      check(1, 0, 8 * MiB);
      check(2, 8 * MiB, 4 * MiB);
      for (const [id, length] of [[1, 8 * MiB], [2, 4 * MiB]] as const) {
        const reply = await next();
        assert.equal(reply[0], FXP.EXTENDED_REPLY, `status ${reply.readUInt32BE(5)}`);
        assert.equal(reply.readUInt32BE(1), id);
        assert.equal(reply.subarray(-32).toString('hex'), createHash('sha256').update(Buffer.alloc(length)).digest('hex'));
      }
      // Four of the whole file: one runs, three wait without a descriptor.
      for (let id = 3; id < 7; id++) check(id, 0, 0);
      await until('the server opens the file to hash it', () => opened(srv, big) > 0, 10_000);
      let most = 0;
      for (const end = Date.now() + 1000; Date.now() < end; await sleep(50)) most = Math.max(most, opened(srv, big));
      assert.equal(most, 1, 'descriptors of the file open at once');
    } finally {
      conn.end();
    }
    await until('the server closes the file once the client is gone', () => opened(srv, big) === 0, 5_000);
    await quiet(srv, 10_000);
  });

  // Found by a review of 5ebd382, which gave a connection's channels one queue of checksums: a channel closed
  // behind another's checksum waited for it before its own end went on (its upload, its logout).
  it("SFTP: a channel closed while another channel hashes ends at once, its upload recorded", { timeout: 60_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
    try {
      const [one, two] = await Promise.all([initialised(conn), initialised(conn)]);
      one.ch.write(new Writer(FXP.EXTENDED, 1).string('check-file-name').string('/big').string('sha256').uint64(0).uint64(0).uint32(0).finish());
      two.ch.write(new Writer(FXP.OPEN, 2).string('/open.bin').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0).finish());
      assert.equal((await two.next())[0], FXP.HANDLE);
      two.ch.write(new Writer(FXP.EXTENDED, 3).string('check-file-name').string('/big').string('sha256').uint64(0).uint64(0).uint32(0).finish());
      await new Promise((r) => setTimeout(r, 300));
      const t0 = performance.now();
      two.ch.close();
      await srv.auditUntil((r) => r.event === 'upload' && r.path === '/open.bin' && r.result === 'aborted', 20_000);
      const seconds = (performance.now() - t0) / 1000;
      assert.ok(seconds < 3, `the closed channel's upload was recorded ${seconds.toFixed(1)} s after its close`);
    } finally {
      conn.end();
    }
  });

  it('and a stop is not held up by them', { timeout: 60_000 }, async () => {
    const ftp = await RawFtp.connect(srv.ftpPort);
    await ftp.read();
    await ftp.login('carol', 'carol password');
    ftp.socket.write('HASH other\r\n');
    await until('the server opens the file to hash it', () => opened(srv, other) === 1, 10_000);
    ftp.socket.destroy();
    // A checksum that outlived its session kept the stopping server's event loop alive until the file's end.
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([srv.terminate().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(r, 15_000, false)))]);
    clearTimeout(timer);
    if (!stopped) await srv.kill();
    assert.ok(stopped, 'the server did not exit within 15 s of SIGTERM');
  });
});

describe('HashingTurns', () => {
  it("a session's end does not wait for the checksum of another session before it; the next turn does", async () => {
    const turns = new HashingTurns(null);
    const a = new SessionChecksums(turns);
    const b = new SessionChecksums(turns);
    let finishA!: () => void;
    const order: string[] = [];
    const running = a.run(({ signal }) => new Promise<void>((resolve, reject) => {
      finishA = () => {
        order.push('a');
        resolve();
      };
      signal.addEventListener('abort', () => reject(signal.reason));
    }));
    const refused = b.run(async () => 'b');
    const ended = await Promise.race([b.end().then(() => 'ended'), new Promise((r) => setTimeout(() => r('still waiting'), 1000))]);
    assert.equal(ended, 'ended');
    await assert.rejects(refused, /Session is closed/);
    const c = new SessionChecksums(turns);
    const third = c.run(async () => void order.push('c'));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(order, [], 'the next turn waits for the one running');
    finishA();
    await Promise.all([running, third]);
    assert.deepEqual(order, ['a', 'c']);
  });
});
