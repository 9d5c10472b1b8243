import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/**
 * SSH clients that open several SFTP channels on one login: GNOME's gvfs
 * (what GNOME Files does) keeps one for browsing and one for transfers, and
 * OpenSSH's sftp run through a ControlMaster opens one per command on the
 * master's connection. The login stands until the connection closes, and
 * the trail must say so: one logout, after all the login did. Each
 * channel's session recorded a logout of its own: two for gvfs's one login,
 * and the master's second upload was recorded after a logout of its login.
 */
const gioMissing = programMissing('gio', 'libglib2.0-bin') || programMissing('dbus-run-session', 'dbus-daemon') || programMissing('/usr/libexec/gvfsd-sftp', 'gvfs-backends');
const sftpMissing = programMissing('sftp', 'openssh-client');

const PASSWORD = 'gina password';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
type Rec = Record<string, unknown>;

describe('SSH clients with several channels on one login: one logout, after everything', () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-one-logout-'));
  const key = join(local, 'key');
  const data = randomBytes(3 * 1024 * 1024);
  const homes: string[] = [];

  before(async () => {
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    srv = await TestServer.start({ users: [{ name: 'gina', password: PASSWORD, args: ['--key', `${key}.pub`] }] });
    writeFileSync(join(local, 'data.bin'), data);
  });
  after(async () => {
    await srv.stop();
    for (const dir of [local, ...homes]) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * The records of the one session that uploaded `path`, once a login made after its client was done has
   * logged out: a record of that session not written by then (a second logout) is not coming.
   */
  async function sessionOf(path: string): Promise<Rec[]> {
    const logins = (rs: Rec[]) => rs.filter((r) => r.event === 'login');
    const before = logins(await srv.audit(0)).length;
    const marker = await sshConnect({ port: srv.sftpPort, username: 'gina', password: PASSWORD });
    const id = logins(await srv.auditWhen((rs) => logins(rs).length > before)).at(-1)?.session;
    marker.end();
    const records = await srv.auditWhen((rs) => rs.some((r) => r.event === 'logout' && r.session === id));
    const session = records.find((u) => u.event === 'upload' && u.path === path)?.session;
    return records.filter((r) => r.session === session);
  }

  /** One login, and one logout as its last record. */
  function loggedOutOnce(records: Rec[]): void {
    const events = records.map((r) => r.event);
    assert.deepEqual(events.filter((e) => e === 'login' || e === 'logout'), ['login', 'logout'], events.join(' '));
    assert.equal(events.at(-1), 'logout', events.join(' '));
  }

  it("gvfs (gio mount, copy in, list, copy out, unmount): the login's two channels, one logout", { skip: gioMissing, timeout: 60_000 }, async () => {
    // Short: gvfs has ssh put its ControlMaster's socket in the runtime directory, and a socket's path is at most 107 bytes.
    const home = mkdtempSync(join(tmpdir(), 'gvfs-'));
    homes.push(home);
    mkdirSync(join(home, 'run'), { mode: 0o700 });
    const url = `sftp://gina@127.0.0.1:${srv.sftpPort}`;
    // gvfs starts its daemons on a session bus of its own, which ends with them; the password is gio mount's answer on stdin.
    const script = [
      'set -e',
      `printf '%s\\n' "$PASSWORD" | gio mount "${url}/"`,
      `gio copy "${join(local, 'data.bin')}" "${url}/in.bin"`,
      `gio list "${url}/"`,
      `gio copy "${url}/in.bin" "${join(local, 'out.bin')}"`,
      `gio mount -u "${url}/"`,
    ].join('\n');
    const r = spawnSync('dbus-run-session', ['--', 'sh', '-c', script], {
      encoding: 'utf8',
      timeout: 45_000,
      // No FUSE mount of it (gvfs-fuse, where installed): this case needs none, and leaves none behind.
      env: { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: join(home, 'run'), GVFS_DISABLE_FUSE: '1', PASSWORD },
    });
    assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
    assert.match(r.stdout, /^in\.bin$/m);
    assert.equal(sha256(readFileSync(join(local, 'out.bin'))), sha256(data));
    const records = await sessionOf('/in.bin');
    loggedOutOnce(records);
    assert.deepEqual(
      records.filter((r) => r.event === 'download' || r.event === 'upload').map((r) => [r.event, r.sha256]),
      [['upload', sha256(data)], ['download', sha256(data)]],
    );
  });

  it('OpenSSH sftp through a ControlMaster: two commands on its connection, no logout between their uploads', { skip: sftpMissing, timeout: 60_000 }, async () => {
    const opts = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes'];
    const mux = ['-o', `ControlPath=${join(local, 'cm-%C')}`, '-i', key, '-P', String(srv.sftpPort)];
    const sftp = (name: string, master: string[]) => {
      const batch = join(local, `${name}.batch`);
      writeFileSync(batch, `put ${join(local, 'data.bin')} /${name}.bin\n`);
      const r = spawnSync('sftp', [...opts, ...mux, ...master, '-b', batch, 'gina@127.0.0.1'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
    };
    // The first starts the master, which stays after it (ControlPersist); the second goes through it.
    sftp('first', ['-o', 'ControlMaster=auto', '-o', 'ControlPersist=30']);
    sftp('second', ['-o', 'ControlMaster=no']);
    const exit = spawnSync('ssh', [...opts, '-o', `ControlPath=${join(local, 'cm-%C')}`, '-p', String(srv.sftpPort), '-O', 'exit', 'gina@127.0.0.1'], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(exit.status, 0, exit.stderr);
    const records = await sessionOf('/first.bin');
    loggedOutOnce(records);
    assert.deepEqual(
      records.filter((r) => r.event === 'upload').map((r) => r.path),
      ['/first.bin', '/second.bin'],
    );
  });
});
