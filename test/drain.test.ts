import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { loggedIn, RawFtp, startUpload } from './helpers/ftp-raw.js';
import { sftpRemote, waitFor, type PacedUpload } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';
import { call, initialised, sshConnect, sftpOf } from './helpers/ssh.js';
import { FXP, Writer } from '../src/sftp/codec.js';

/*
 * Issue #15, lifecycle: SIGTERM stops accepting at once, ends idle sessions at
 * once, lets transfers in progress finish up to shutdown.drainTimeout, then
 * ends the rest as aborted; the audit is flushed and the process exits 0,
 * having logged one line with the counts. On one process and on workers. A
 * SIGHUP meanwhile reloads, as while serving.
 */

const PASSWORD = 'drain test password';
const HALF = 256 * 1024;

async function start(workers: number, drainTimeout: number, yaml = ''): Promise<TestServer> {
  return TestServer.start({
    yaml: `ftp:\n  tls: optional\n${yaml}`,
    users: [{ name: 'alice', password: PASSWORD }],
    env: { SLUICE_WORKERS: String(workers), SLUICE_SHUTDOWN_DRAIN_TIMEOUT: String(drainTimeout) },
  });
}

const ftpLogin = (srv: TestServer): Promise<RawFtp> => loggedIn(srv.ftpPort, 'alice', PASSWORD);

/** A plain FTP STOR whose bytes the test sends when it likes. */
async function ftpUpload(srv: TestServer, path: string): Promise<{ control: RawFtp; data: net.Socket }> {
  const control = await ftpLogin(srv);
  return { control, data: await startUpload(control, path) };
}

/** alice's SSH connection; its errors (the server ending it) are the test's to look at, not thrown. */
async function sshLogin(srv: TestServer): Promise<ssh2.Client> {
  const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: PASSWORD });
  c.on('error', () => undefined);
  return c;
}

async function sftpLogin(srv: TestServer): Promise<ssh2.Client> {
  const c = await sshLogin(srv);
  await sftpOf(c);
  return c;
}

function closed(socket: net.Socket | ssh2.Client): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** Whether a new connection to `port` is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

function exitOf(srv: TestServer): Promise<number | null> {
  return new Promise((resolve) => srv.process?.once('exit', (code) => resolve(code)));
}

/** The one count line (from the primary, with workers). */
function drainLine(srv: TestServer): Record<string, unknown> {
  const lines = srv.log.split('\n').filter((l) => l.includes('"msg":"drained:'));
  assert.equal(lines.length, 1, srv.log);
  return JSON.parse(lines[0] as string) as Record<string, unknown>;
}

function uploads(records: Record<string, unknown>[], path: string): Record<string, unknown>[] {
  return records.filter((r) => r.event === 'upload' && r.path === path);
}

for (const workers of [1, 2]) {
  describe(`SIGTERM drain, workers: ${workers}`, () => {
    it('transfers in progress finish (FTP 226, SFTP OK, audited ok, whole file), idle sessions end at once, new connections are refused, exit 0', async () => {
      const srv = await start(workers, 60);
      try {
        const body = randomBytes(2 * HALF);
        const ftp = await ftpUpload(srv, '/ftp-slow.bin');
        const sftp = await sftpRemote(srv, 'alice', PASSWORD);
        const sftpUp: PacedUpload = await sftp.start('/sftp-slow.bin');
        await new Promise<void>((resolve) => ftp.data.write(body.subarray(0, HALF), () => resolve()));
        await sftpUp.write(body.subarray(0, HALF));
        const idleFtp = await ftpLogin(srv);
        const idleSftp = await sftpLogin(srv);
        const idleSftpClosed = closed(idleSftp);
        const pending = await RawFtp.connect(srv.ftpPort);
        assert.equal((await pending.read())?.code, 220);
        assert.equal((await pending.cmd('USER alice')).code, 331);
        const exited = exitOf(srv);

        srv.signal('SIGTERM');
        // Idle sessions are ended at once: 421, then the connection closes.
        assert.equal((await idleFtp.read())?.code, 421);
        await idleSftpClosed;
        // A login during the drain opens no session.
        const late = await pending.cmd(`PASS ${PASSWORD}`);
        assert.equal(late.code, 451, late.text);
        // The ports are closed while the uploads still run.
        for (const port of [srv.ftpPort, srv.sftpPort]) {
          let tries = 0;
          while (!(await refused(port))) {
            assert.ok(++tries < 100, `port ${port} still accepts during the drain`);
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        assert.equal(srv.process?.exitCode, null, 'the server did not wait for the transfers');
        // A reload during the drain (logrotate's postrotate) reloads; it ended the server before (found by a review).
        srv.signal('SIGHUP');
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(srv.process?.exitCode, null, 'a SIGHUP during the drain ended the server');

        // The uploads complete, each answered as usual; then their sessions end.
        const ftpClosed = closed(ftp.control.socket);
        await new Promise<void>((resolve) => ftp.data.end(body.subarray(HALF), () => resolve()));
        assert.equal((await ftp.control.read())?.code, 226);
        assert.equal((await ftp.control.read())?.code, 421);
        await ftpClosed;
        await sftpUp.write(body.subarray(HALF));
        assert.equal(await sftpUp.finish(), null);
        assert.equal(await exited, 0, srv.log + srv.stderr);

        for (const name of ['ftp-slow.bin', 'sftp-slow.bin']) assert.ok(readFileSync(join(srv.home('alice'), name)).equals(body), name);
        const records = await srv.audit(0);
        for (const path of ['/ftp-slow.bin', '/sftp-slow.bin']) {
          const [record, ...more] = uploads(records, path);
          assert.equal(more.length, 0);
          assert.equal(record?.result, 'ok', JSON.stringify(record));
          assert.equal(record?.bytes, body.length);
        }
        const line = drainLine(srv);
        assert.deepEqual([line.endedIdle, line.transfersFinished, line.transfersAborted], [2, 2, 0], JSON.stringify(line));
        const logouts = records.filter((r) => r.event === 'logout');
        // Every login has its logout: the late one's says its session never opened.
        assert.equal(records.filter((r) => r.event === 'login').length, 5);
        assert.deepEqual(logouts.map((r) => String(r.reason).replace(/^(session not opened):.*/, '$1')).sort(), [
          ...Array<string>(4).fill('server shutting down'),
          'session not opened',
        ], JSON.stringify(logouts));
      } finally {
        await srv.stop();
      }
    });

    it('at drainTimeout the unfinished uploads are aborted (recorded so, no file under their names), exit 0', async () => {
      const srv = await start(workers, 1);
      try {
        const ftp = await ftpUpload(srv, '/ftp-cut.bin');
        const sftp = await sftpRemote(srv, 'alice', PASSWORD);
        const sftpUp = await sftp.start('/sftp-cut.bin');
        await new Promise<void>((resolve) => ftp.data.write(randomBytes(HALF), () => resolve()));
        await sftpUp.write(randomBytes(HALF));
        const exited = exitOf(srv);
        srv.signal('SIGTERM');
        assert.equal(await exited, 0, srv.log + srv.stderr);
        // The FTP client hears why its session ended.
        assert.equal((await ftp.control.read())?.code, 421);

        const records = await srv.audit(0);
        for (const path of ['/ftp-cut.bin', '/sftp-cut.bin']) {
          const [record, ...more] = uploads(records, path);
          assert.equal(more.length, 0);
          assert.equal(record?.result, 'aborted', JSON.stringify(record));
          assert.equal(record?.reason, 'server shutting down: drain timeout');
        }
        assert.deepEqual(readdirSync(srv.home('alice')).filter((n) => !n.startsWith('.')), []);
        for (const name of ['ftp-cut.bin', 'sftp-cut.bin']) assert.ok(!existsSync(join(srv.home('alice'), name)));
        const line = drainLine(srv);
        assert.deepEqual([line.endedIdle, line.transfersFinished, line.transfersAborted], [0, 0, 2], JSON.stringify(line));
      } finally {
        await srv.stop();
      }
    });

    it('a second SIGTERM ends the drain at once', { timeout: 60_000 }, async () => {
      const srv = await start(workers, 600);
      try {
        const sftp = await sftpRemote(srv, 'alice', PASSWORD);
        const up = await sftp.start('/second.bin');
        await up.write(randomBytes(HALF));
        const exited = exitOf(srv);
        srv.signal('SIGTERM');
        await waitFor('the stop under way', () => srv.log.includes('"msg":"stopping"'));
        srv.signal('SIGTERM');
        assert.equal(await exited, 0, srv.log + srv.stderr);
        const [record] = uploads(await srv.audit(0), '/second.bin');
        assert.equal(record?.result, 'aborted');
        assert.equal(record?.reason, 'server shutting down: drain cut short');
      } finally {
        await srv.stop();
      }
    });
  });
}

describe('SIGTERM drain: one SSH connection of several channels', () => {
  it('ends once the transfers of all its channels have: an idle channel beside them, or one whose upload ends first, cuts none', { timeout: 60_000 }, async () => {
    const srv = await start(1, 60);
    try {
      const c = await sshLogin(srv);
      let gone = false;
      const connectionClosed = closed(c).then(() => void (gone = true));
      // What OpenSSH's ControlMaster or a GUI client does: channels multiplexed on one connection, one of them idle.
      const [first, second] = [await sftpOf(c), await sftpOf(c), await sftpOf(c)];
      const body = randomBytes(2 * HALF);
      const ups = await Promise.all(['/first.bin', '/second.bin'].map(async (path, i) => {
        const sftp = (i === 0 ? first : second) as ssh2.SFTPWrapper;
        const handle = await call<Buffer>((cb) => sftp.open(path, 'w', cb));
        await call((cb) => sftp.write(handle, body, 0, HALF, 0, cb));
        return async () => {
          await call((cb) => sftp.write(handle, body, HALF, HALF, HALF, cb));
          await call((cb) => sftp.close(handle, cb));
        };
      }));
      const exited = exitOf(srv);
      srv.signal('SIGTERM');
      await waitFor('the stop under way', () => srv.log.includes('"msg":"stopping"'));
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!gone, 'the idle channel ended the connection');
      await (ups[0] as () => Promise<void>)();
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!gone, 'the first upload to end ended the connection');
      await (ups[1] as () => Promise<void>)();
      assert.equal(await exited, 0, srv.log + srv.stderr);
      await connectionClosed;
      for (const name of ['first.bin', 'second.bin']) assert.ok(readFileSync(join(srv.home('alice'), name)).equals(body), name);
      const records = await srv.audit(0);
      for (const path of ['/first.bin', '/second.bin']) assert.equal(uploads(records, path)[0]?.result, 'ok', path);
      const line = drainLine(srv);
      assert.deepEqual([line.endedIdle, line.transfersFinished, line.transfersAborted], [1, 2, 0], JSON.stringify(line));
    } finally {
      await srv.stop();
    }
  });
});

/**
 * An SFTP channel on `c` whose client grants the server `window` bytes at its
 * open and never more (ssh2's client adjusts only once a megabyte came):
 * replies past them stay unsent.
 */
function narrowChannel(c: ssh2.Client, window: number): ReturnType<typeof initialised> {
  const protocol = (c as unknown as { _protocol: { session(chan: number, window: number, packet: number): void } })._protocol;
  const open = protocol.session;
  protocol.session = (chan, _window, packet) => {
    protocol.session = open;
    open.call(protocol, chan, window, packet);
  };
  return initialised(c);
}

describe('SIGTERM drain: what an SSH connection is held for once its transfers have ended', () => {
  it('only the transfers\' own replies: a request still being answered, or replies a channel never reads, end with it', { timeout: 60_000 }, async () => {
    // A checksum of a file not just uploaded is read at limits.hashRate: this one takes 16 s.
    const srv = await start(1, 30, 'limits:\n  hashRate: 1048576\n');
    try {
      writeFileSync(join(srv.home('alice'), 'big.bin'), Buffer.alloc(16 * 1024 * 1024, 1));
      const c = await sshLogin(srv);
      let gone = false;
      const connectionClosed = closed(c).then(() => void (gone = true));
      const sftp = await sftpOf(c);
      const body = randomBytes(2 * HALF);
      const up = await call<Buffer>((cb) => sftp.open('/held.bin', 'w', cb));
      await call((cb) => sftp.write(up, body, 0, HALF, 0, cb));
      // A channel whose client reads nothing more: its replies past 4 KiB wait for a window that never opens.
      const unread = await narrowChannel(c, 4096);
      for (let id = 10; id < 200; id++) unread.ch.write(new Writer(FXP.STAT, id).string('/').finish());
      // A request the server is still answering.
      const hashing = await initialised(c);
      hashing.ch.write(new Writer(FXP.EXTENDED, 1).string('check-file-name').string('/big.bin').string('sha256').uint64(0).uint64(0).uint32(0).finish());
      const exited = exitOf(srv);
      srv.signal('SIGTERM');
      await waitFor('the stop under way', () => srv.log.includes('"msg":"stopping"'));
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!gone, 'the connection ended before its upload');
      await call((cb) => sftp.write(up, body, HALF, HALF, HALF, cb));
      await call((cb) => sftp.close(up, cb));
      const t0 = performance.now();
      await connectionClosed;
      const code = await exited;
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(code, 0, srv.log + srv.stderr);
      assert.ok(seconds < 5, `the server exited ${seconds.toFixed(1)} s after the last transfer ended`);
      assert.ok(readFileSync(join(srv.home('alice'), 'held.bin')).equals(body));
      const records = await srv.audit(0);
      assert.equal(uploads(records, '/held.bin')[0]?.result, 'ok');
      const line = drainLine(srv);
      assert.deepEqual([line.endedIdle, line.transfersFinished, line.transfersAborted], [2, 1, 0], JSON.stringify(line));
    } finally {
      await srv.kill();
      await srv.stop();
    }
  });
});

describe('SIGTERM drain: an SFTP client that stops reading once its last transfer is sent', () => {
  it('holds the stop no longer than the drain timeout', { timeout: 60_000 }, async () => {
    const srv = await start(1, 2);
    try {
      // Listings whose replies outgrow the SSH window the client gives: 6 of 1,000 names of 200 characters (not
      // one of 6,000: thousands of files made and removed slow every create after them on these VMs' ext4).
      const big = join(srv.home('alice'), 'big');
      mkdirSync(big);
      for (let i = 0; i < 1000; i++) writeFileSync(join(big, `${String(i).padStart(5, '0')}${'n'.repeat(195)}`), '');
      const c = await sshLogin(srv);
      const sftp = await sftpOf(c);
      const up = await call<Buffer>((cb) => sftp.open('/late.bin', 'w', cb));
      await call((cb) => sftp.write(up, Buffer.alloc(1024, 7), 0, 1024, 0, cb));
      const dirs: Buffer[] = [];
      for (let i = 0; i < 6; i++) dirs.push(await call<Buffer>((cb) => sftp.opendir('/big', cb)));
      const exited = exitOf(srv);
      srv.signal('SIGTERM');
      await waitFor('the stop under way', () => srv.log.includes('"msg":"stopping"'));
      // From here the client reads nothing, so its window never opens again: the upload's end goes in, its
      // reply waits behind the listing's.
      (c as unknown as { _sock: net.Socket })._sock.pause();
      for (const dir of dirs) for (let i = 0; i < 10; i++) sftp.readdir(dir, () => undefined);
      sftp.close(up, () => undefined);
      const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running 10 s after SIGTERM'), 10_000))]);
      assert.equal(code, 0, srv.log + srv.stderr);
      c.end();
    } finally {
      // One still waiting would wait for ever.
      await srv.kill();
      await srv.stop();
    }
  });
});
