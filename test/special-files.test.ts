import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/** RETR and SFTP GET of `path` as alice: both refused as no regular file. */
async function refusedAsNoRegularFile(srv: TestServer, path: string): Promise<void> {
  const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
  try {
    await c.passive(true);
    const r = await c.cmd(`RETR ${path}`);
    assert.deepEqual([r.code, r.text], [550, '550 Not a regular file.']);
  } finally {
    c.close();
  }
  const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
  try {
    const sftp = await sftpOf(conn);
    await assert.rejects(call((cb) => sftp.readFile(path, cb)), /Not a regular file/);
  } finally {
    conn.end();
  }
}

/** The controlling terminal of process `pid` (field 7 of /proc/<pid>/stat, tty_nr): 0 is none. */
function controllingTty(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name, in parentheses, may hold blanks: count the fields after its end.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[4]);
}

/**
 * A device node in a home, opened for a download: its type is known only once
 * it is open, so the open must not act (storage/local.ts NO_SIDE_EFFECTS).
 * Found by a review: without O_NOCTTY a tty opened by a server that is a
 * session leader without a terminal (systemd's service, or started under
 * setsid as here) became its controlling terminal. Making a device node needs
 * root, and the tests run unprivileged: the server runs in a user and mount
 * namespace of its own (unshare -Urm, as test/full-disk does), where the
 * slave of the test's own pseudo-terminal is bind-mounted over a file of the
 * home. Skipped where unprivileged user namespaces are off.
 */
describe('a device node in a home: refused for download, opened without side effects', () => {
  const namespaces = spawnSync('unshare', ['-Urm', 'true']).status === 0;
  let srv: TestServer | undefined;
  let pty: ChildProcessWithoutNullStreams | undefined;
  /** The path of the pty's slave. */
  let slave = '';
  before(async () => {
    if (!namespaces) return;
    // The master held open while the test runs (until its stdin ends); the slave's path printed.
    pty = spawn('python3', ['-c', 'import os, pty, sys\nm, s = pty.openpty()\nprint(os.ttyname(s), flush=True)\nos.close(s)\nsys.stdin.read()']);
    const [line] = (await once(pty.stdout, 'data')) as [Buffer];
    slave = String(line).trim();
    const plant = 'touch "$1" && mount --bind "$2" "$1" && shift 2 && exec setsid "$@"';
    srv = await TestServer.start({
      users: [{ name: 'alice', password: 'alice password' }],
      runner: ['unshare', '-Urm', 'sh', '-c', plant, 'sh', 'data/homes/alice/tty', slave],
    });
  });
  after(async () => {
    await srv?.stop();
    pty?.stdin.end();
    if (pty && pty.exitCode === null) await once(pty, 'exit');
  });

  it('RETR and SFTP GET refuse it as no regular file, and the server takes no terminal', async (t) => {
    if (!srv) return t.skip('unshare -Urm fails here (unprivileged user namespaces off)');
    assert.equal(controllingTty(srv.pid as number), 0, 'under setsid, the server starts without a terminal');
    await refusedAsNoRegularFile(srv, '/tty');
    assert.equal(controllingTty(srv.pid as number), 0, 'the server made the tty its controlling terminal');
    assert.ok(srv.alive);
  });

  /**
   * The tty bound over `file` (relative to the server's directory) in the server's own mount namespace,
   * after its start: as a file the operator's tools replace (a renewed certificate).
   */
  function plantTty(file: string): void {
    const server = srv as TestServer;
    const r = spawnSync('nsenter', ['-t', String(server.pid), '-U', '-m', '--preserve-credentials', 'mount', '--bind', slave, join(server.dir, file)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }

  // Found by a review of the server's own opens (regular-file.ts): they were O_NONBLOCK only, and a tty
  // in a certificate's place became the server's controlling terminal before the check refused it.
  it('a SIGHUP that finds a tty in the certificate\'s place: the reload fails, and the server takes no terminal', async (t) => {
    if (!srv) return t.skip('unshare -Urm fails here (unprivileged user namespaces off)');
    plantTty('certs/tls-cert.pem');
    process.kill(srv.pid as number, 'SIGHUP');
    await srv.logs(/TLS certificate reload failed/);
    assert.equal(controllingTty(srv.pid as number), 0, 'the server made the tty its controlling terminal');
  });
});

/**
 * A socket or a FIFO in a home (an operator's tool left it, or a shell user
 * made it): refused as no regular file, alike by every front-end. A socket
 * cannot be opened at all (ENXIO), and that errno was told as 'Operation
 * failed' where a FIFO, opened and looked at, was 'Not a regular file'.
 */
describe('a socket or a FIFO in a home: refused for download as no regular file', () => {
  let srv: TestServer;
  let socket: Server;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    socket = createServer();
    await new Promise<void>((resolve) => socket.listen(join(srv.home('alice'), 'sock'), resolve));
    assert.equal(spawnSync('mkfifo', [join(srv.home('alice'), 'fifo')]).status, 0);
  });
  after(async () => {
    socket.close();
    await srv.stop();
  });

  for (const name of ['sock', 'fifo']) {
    it(`${name}: RETR, SFTP GET and md5sum`, async () => {
      await refusedAsNoRegularFile(srv, `/${name}`);
      const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      try {
        const stderr = await new Promise<string>((resolve, reject) =>
          conn.exec(`md5sum ${name}`, (err, ch) => {
            if (err) return reject(err);
            let text = '';
            ch.stderr.on('data', (d: Buffer) => (text += d.toString()));
            ch.on('close', () => resolve(text)).resume();
          }),
        );
        assert.equal(stderr, `md5sum: ${name}: Not a regular file\n`);
      } finally {
        conn.end();
      }
      assert.ok(srv.alive);
    });
  }
});
