import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/**
 * GNOME's gvfs over FTP (what GNOME Files does with an ftp:// place): it
 * changes into a directory to learn that it is one, and removes it from
 * there. sluice refused to remove the working directory (550, recorded as
 * `denied` for `permission`, though the user may rmdir), where vsftpd, as
 * rmdir(2), removes it: a folder deleted in GNOME Files over FTP failed with
 * "Operation failed" once its files were gone.
 */
const gioMissing = programMissing('gio', 'libglib2.0-bin') || programMissing('dbus-run-session', 'dbus-daemon') || programMissing('/usr/libexec/gvfsd-ftp', 'gvfs-backends');

const PASSWORD = 'gina password';
type Rec = Record<string, unknown>;

describe('gvfs over FTP', { skip: gioMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-gvfs-ftp-'));

  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'gina', password: PASSWORD }] });
    mkdirSync(join(local, 'run'), { mode: 0o700 });
    writeFileSync(join(local, 'note.txt'), 'a note\n');
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  it('a folder made, a file copied into it, both removed (gio mkdir, copy, remove)', { timeout: 60_000 }, async () => {
    const url = `ftp://gina@127.0.0.1:${srv.ftpPort}`;
    const script = [
      'set -e',
      `printf '%s\\n' "$PASSWORD" | gio mount "${url}/"`,
      `trap 'gio mount -u "${url}/"' EXIT`,
      `gio mkdir "${url}/folder"`,
      `gio copy "${join(local, 'note.txt')}" "${url}/folder/note.txt"`,
      `gio remove "${url}/folder/note.txt"`,
      `gio remove "${url}/folder"`,
    ].join('\n');
    const r = spawnSync('dbus-run-session', ['--', 'sh', '-c', script], {
      encoding: 'utf8',
      timeout: 45_000,
      env: { PATH: process.env.PATH, HOME: local, XDG_RUNTIME_DIR: join(local, 'run'), GVFS_DISABLE_FUSE: '1', PASSWORD },
    });
    assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
    assert.ok(!existsSync(join(srv.home('gina'), 'folder')));
    const records = await srv.auditWhen((rs: Rec[]) => rs.some((x) => x.event === 'logout'));
    assert.deepEqual(
      records.filter((x) => x.path === '/folder' || x.path === '/folder/note.txt').map((x) => `${String(x.event)} ${String(x.path)}`),
      ['mkdir /folder', 'upload /folder/note.txt', 'delete /folder/note.txt', 'rmdir /folder'],
    );
  });
});
