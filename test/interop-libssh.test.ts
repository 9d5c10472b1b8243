import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { TestServer } from './helpers/server.js';

const SOURCE = fileURLToPath(new URL('./fixtures/libssh_symlink.c', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-libssh-'));
const bin = join(dir, 'libssh_symlink');

/**
 * libssh (not libssh2, curl's), the SFTP client of KDE's kio-sftp and Remmina, has no command-line
 * client in Debian: a few lines of C against Debian's libssh-dev are the client here.
 */
const libsshMissing = ((): string | false => {
  const r = spawnSync('cc', ['-o', bin, SOURCE, '-lssh'], { encoding: 'utf8' });
  if (r.status === 0) return false;
  rmSync(dir, { recursive: true, force: true });
  if (process.env.CI) assert.fail(`libssh-dev and a C compiler must be installed in CI: ${r.error?.message ?? r.stderr}`);
  return 'no C compiler or no libssh-dev (.ci/run installs gcc and libssh-dev)';
})();

describe('libssh over SFTP', { skip: libsshMissing }, () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'lee', password: 'lee password', args: ['--perms', 'all'] }] });
    writeFileSync(join(srv.home('lee'), 'target.txt'), 'pointed at');
  });
  after(async () => {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // libssh sends SYMLINK in the draft's order (link, target) to a server whose version string does not
  // say OpenSSH: read in OpenSSH's order, sftp_symlink("target.txt", "link") made target.txt a link.
  it('sftp_symlink(target, link) makes the link', () => {
    const r = spawnSync(bin, [String(srv.sftpPort), 'lee', 'lee password', 'target.txt', 'link'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'target.txt\n');
    const home = srv.home('lee');
    assert.equal(readlinkSync(join(home, 'link')), 'target.txt');
    assert.ok(lstatSync(join(home, 'target.txt')).isFile());
    assert.ok(existsSync(join(home, 'link')));
  });
});
