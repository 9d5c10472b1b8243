import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { BIN } from './helpers/cli.js';

/*
 * Without /proc the local storage cannot pin anything: sluice must say so and
 * stop, not start and fail every file operation. /proc is hidden by a tmpfs
 * mounted over it in a private mount namespace (unshare -rm needs no root).
 */
const canHideProc = spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs none /proc'], { stdio: 'ignore' }).status === 0;

it('serve refuses to start without /proc, saying why', { skip: !canHideProc && 'unshare -rm with a tmpfs mount is not available here' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-noproc-'));
  try {
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs none /proc && exec "$0" "$1" serve', process.execPath, BIN], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, SLUICE_BIND: '127.0.0.1', SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: '0', SLUICE_LOG_LEVEL: 'warn' },
      timeout: 20_000,
    });
    assert.equal(r.status, 1, `exit status (stdout: ${r.stdout}, stderr: ${r.stderr})`);
    assert.match(r.stdout, /needs \/proc mounted/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
