import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/**
 * Runs a Python script that uses paramiko against the server's SFTP port
 * (sys.argv[1]) and returns its stdout, the script's exit checked. Without
 * paramiko the test is skipped (null), except in CI, where .ci/run installs
 * python3-paramiko and its absence is a failure.
 */
export function runParamiko(t: TestContext, script: string, sftpPort: number): string | null {
  if (spawnSync('python3', ['-c', 'import paramiko'], { encoding: 'utf8' }).status !== 0) {
    if (process.env.CI) assert.fail('python3-paramiko must be installed in CI');
    t.skip('paramiko is not installed (.ci/run installs python3-paramiko)');
    return null;
  }
  const r = spawnSync('python3', ['-c', script, String(sftpPort)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}
