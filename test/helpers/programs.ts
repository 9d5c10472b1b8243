import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { TestContext } from 'node:test';

/**
 * Why a test of `program` cannot run here, or false when it can: outside CI a
 * missing program skips the test with this reason; in CI, where .ci/run
 * installs it (Debian package `pkg`), it is a failure.
 */
export function programMissing(program: string, pkg = program): string | false {
  if (spawnSync('which', [program]).status === 0) return false;
  if (process.env.CI) assert.fail(`${pkg} must be installed in CI (.ci/run installs it)`);
  return `${program} is not installed (.ci/run installs ${pkg})`;
}

/** Within a running test: skips it when `program` is missing (programMissing); whether it may go on. */
export function need(t: TestContext, program: string): boolean {
  const missing = programMissing(program);
  if (missing) t.skip(missing);
  return missing === false;
}

/** Why a FUSE mount cannot be made by this user here, or false: the device must be readable and writable (Debian's udev rule makes it 0666). */
export function fuseDeviceUnusable(): string | false {
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
    return false;
  } catch {
    return '/dev/fuse is not usable by this user';
  }
}
