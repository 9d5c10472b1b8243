import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { TestServer } from './helpers/server.js';

const PY = fileURLToPath(new URL('./fixtures/asyncssh_client.py', import.meta.url));

/** asyncssh: a strict Python SFTP client that adapts to the server by its version string. */
const asyncsshMissing = ((): string | false => {
  if (spawnSync('python3', ['-c', 'import asyncssh'], { encoding: 'utf8' }).status === 0) return false;
  if (process.env.CI) assert.fail('python3-asyncssh must be installed in CI');
  return 'asyncssh is not installed (.ci/run installs python3-asyncssh)';
})();

describe('asyncssh over SFTP', { skip: asyncsshMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-asyncssh-'));
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'ava', password: 'ava password', args: ['--perms', 'all'] }] });
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  function asyncssh(scenario: string): Record<string, unknown> {
    const r = spawnSync('python3', [PY, String(srv.sftpPort), 'ava', 'ava password', scenario, local], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  // asyncssh sends SYMLINK in the draft's order (link, target) to a server whose version string does
  // not say OpenSSH or paramiko; read in OpenSSH's order, each link was made the other way round.
  it('symlink(target, link) makes the link, not a link named after the target', () => {
    const out = asyncssh('links');
    assert.deepEqual(out, {
      readlink: 'target.txt',
      islink: true,
      through_link: 'pointed at',
      listdir_through_link: ['inside.txt'],
      dangling: 'nowhere',
      hard: 10,
      target_kept: true,
    });
    const home = srv.home('ava');
    assert.equal(readlinkSync(join(home, 'dir-link')), 'dir');
    assert.ok(lstatSync(join(home, 'dir')).isDirectory());
  });

  it('parallel transfers, trees, open modes and the OpenSSH extensions it uses', () => {
    assert.deepEqual(asyncssh('transfers'), {
      big: true,
      preserved_mtime: 1500000000,
      tree_back: 'leaf',
      modes: 'aXcdef',
      exclusive: 'refused',
      posix_rename: 'other',
      statvfs: 255,
      many: 1500,
      glob: ['many/f0000', 'many/f0001', 'many/f0002', 'many/f0003', 'many/f0004', 'many/f0005', 'many/f0006', 'many/f0007', 'many/f0008', 'many/f0009'],
      rmtree: false,
    });
  });

  // It sends its first byte before it reads; a refused scp's channel closed at once failed that write,
  // and all it said was "Connection lost".
  it('legacy SCP: a round trip; a wildcard or shell syntax refused with the reason, the connection serving on', () => {
    assert.deepEqual(asyncssh('scp'), {
      round_trip: true,
      wildcard: 'SFTPFailure: scp: wildcards are not supported: name each file',
      shell: 'SFTPFailure: scp: shell syntax ";" is not supported',
      open_after: 20000,
    });
  });
});
