import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fuseDeviceUnusable, programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/**
 * GNOME's FUSE mount of an SFTP server (gvfsd-fuse, under
 * $XDG_RUNTIME_DIR/gvfs), which programs that do not speak GIO write
 * through: a shell, an editor, `cp`. Its close(2) returns before the
 * handle's CLOSE is sent, and the next open(2) of the name looks at it
 * first, often before that CLOSE: with atomic uploads the look missed the
 * name while the CLOSE committed it, and `echo b >> f` right after
 * `echo a > f` failed with ENOENT in 4 of 6 tries.
 */
const fuseMissing =
  programMissing('gio', 'libglib2.0-bin') ||
  programMissing('dbus-run-session', 'dbus-daemon') ||
  programMissing('/usr/libexec/gvfsd-sftp', 'gvfs-backends') ||
  programMissing('/usr/libexec/gvfsd-fuse', 'gvfs-fuse') ||
  fuseDeviceUnusable();

const PASSWORD = 'gina password';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const APPENDS = 10;

describe("gvfs's FUSE mount over SFTP (atomic uploads, the default)", () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-gvfs-fuse-'));
  // Short: gvfs puts sockets in the runtime directory, and a socket's path is at most 107 bytes.
  const home = mkdtempSync(join(tmpdir(), 'gvfs-'));
  const data = randomBytes(3 * 1024 * 1024);

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'gina', password: PASSWORD }] });
    mkdirSync(join(home, 'run'), { mode: 0o700 });
    writeFileSync(join(local, 'data.bin'), data);
  });
  after(async () => {
    await srv.stop();
    for (const dir of [local, home]) rmSync(dir, { recursive: true, force: true });
  });

  it('a shell writes, appends to, copies, renames and removes files in the mount', { skip: fuseMissing, timeout: 90_000 }, async () => {
    const url = `sftp://gina@127.0.0.1:${srv.sftpPort}`;
    const mounts = join(home, 'run', 'gvfs');
    // gvfs starts its daemons on a session bus of its own, which ends with them; the password is gio mount's
    // answer on stdin. gvfsd-fuse is started here, in the foreground and in the background, as a desktop session would.
    const script = [
      'set -e',
      `printf '%s\\n' "$PASSWORD" | gio mount "${url}/"`,
      `mkdir -p "${mounts}"`,
      `/usr/libexec/gvfsd-fuse "${mounts}" -f & fuse=$!`,
      'for i in $(seq 50); do m=$(ls -d "$MOUNTS"/sftp:* 2>/dev/null || true); [ -n "$m" ] && break; sleep 0.1; done',
      '[ -n "$m" ] || { echo "no mount under $MOUNTS" >&2; exit 3; }',
      'failed=0',
      `for i in $(seq ${APPENDS}); do echo "first $i" > "$m/a$i.txt"; echo "second $i" >> "$m/a$i.txt" || failed=$((failed+1)); done`,
      'echo "appends failed: $failed"',
      `cp "${join(local, 'data.bin')}" "$m/data.bin"`,
      'mkdir "$m/dir"',
      'mv "$m/data.bin" "$m/dir/moved.bin"',
      `cp "$m/dir/moved.bin" "${join(local, 'back.bin')}"`,
      'rm "$m/a1.txt"',
      `fusermount3 -u "${mounts}" || fusermount -u "${mounts}"`,
      'wait $fuse || true',
      `gio mount -u "${url}/"`,
    ].join('\n');
    const r = spawnSync('dbus-run-session', ['--', 'sh', '-c', script], {
      encoding: 'utf8',
      timeout: 75_000,
      env: { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: join(home, 'run'), PASSWORD, MOUNTS: mounts },
    });
    assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
    assert.match(r.stdout, /^appends failed: 0$/m, r.stderr);
    const homeDir = srv.home('gina');
    for (let i = 2; i <= APPENDS; i++) assert.equal(readFileSync(join(homeDir, `a${i}.txt`), 'utf8'), `first ${i}\nsecond ${i}\n`);
    assert.equal(sha256(readFileSync(join(homeDir, 'dir', 'moved.bin'))), sha256(data));
    assert.equal(sha256(readFileSync(join(local, 'back.bin'))), sha256(data));
    const records = await srv.auditUntil((l) => l.event === 'logout');
    const upload = records.find((l) => l.event === 'upload' && l.path === '/data.bin');
    assert.equal(upload?.result, 'ok', JSON.stringify(upload));
    assert.equal(upload?.sha256, sha256(data));
    assert.ok(records.some((l) => l.event === 'rename' && l.from === '/data.bin' && l.to === '/dir/moved.bin'), JSON.stringify(records.filter((l) => l.event === 'rename')));
    assert.ok(records.some((l) => l.event === 'delete' && l.path === '/a1.txt'));
  });
});
