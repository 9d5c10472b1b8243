// Settings that used to pass loading and then broke the running server (an
// SFTP budget nothing fits in, a port past 65535, an algorithm ssh2 does not
// know): each is refused when the configuration is read, by the real CLI,
// with one line naming the key and exit code 2.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** No listener on a fixed port, should a configuration be wrongly accepted by `serve`. */
const NO_PORTS = { SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: '0', SLUICE_WORKERS: '1' };

let files = 0;
/** `sluice ARGS` with `yaml` as its configuration file. */
function withConfig(yaml: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const file = join(dir, `c${files++}.yaml`);
  writeFileSync(file, yaml);
  return sluice(dir, args, '', { ...NO_PORTS, SLUICE_CONFIG: file, ...env });
}

/** Refused by `sluice user list` (which reads the configuration like every command): exit 2, one line. */
function refuses(yaml: string, line: RegExp, env: NodeJS.ProcessEnv = {}): void {
  const r = withConfig(yaml, ['user', 'list'], env);
  assert.equal(r.code, 2, `exit ${r.code}; stdout ${r.stdout}; stderr ${r.stderr}`);
  assert.match(r.stderr, line);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
}

function accepts(yaml: string, env: NodeJS.ProcessEnv = {}): void {
  const r = withConfig(yaml, ['user', 'list'], env);
  assert.equal(r.code, 0, r.stderr);
}

describe('sftp.maxQueuedBytes holds at least one SFTP message', () => {
  it('refuses 0 and anything under 256K (no request could ever be taken: every SFTP request hung)', () => {
    refuses('sftp:\n  maxQueuedBytes: 0\n', /^sluice: config: sftp\.maxQueuedBytes: must be at least 256K \(one SFTP message/);
    refuses('sftp:\n  maxQueuedBytes: 255K\n', /^sluice: config: sftp\.maxQueuedBytes: must be at least 256K/);
  });

  it('accepts 256K', () => {
    accepts('sftp:\n  maxQueuedBytes: 256K\n');
  });
});
