import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/**
 * Why a test that drives paramiko cannot run here, or false when it can:
 * outside CI a missing paramiko skips the test with this reason; in CI, where
 * .ci/run installs python3-paramiko, its absence is a failure.
 */
export function paramikoMissing(): string | false {
  if (spawnSync('python3', ['-c', 'import paramiko'], { encoding: 'utf8' }).status === 0) return false;
  if (process.env.CI) assert.fail('python3-paramiko must be installed in CI');
  return 'paramiko is not installed (.ci/run installs python3-paramiko)';
}

/**
 * Runs a Python script that uses paramiko against the server's SFTP port
 * (sys.argv[1]) and returns its stdout, the script's exit checked; null when
 * the test was skipped (paramikoMissing).
 */
export function runParamiko(t: TestContext, script: string, sftpPort: number): string | null {
  const missing = paramikoMissing();
  if (missing) {
    t.skip(missing);
    return null;
  }
  const r = spawnSync('python3', ['-c', script, String(sftpPort)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}
