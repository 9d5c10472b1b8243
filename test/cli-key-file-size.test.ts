import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, sluice } from './helpers/cli.js';

/*
 * `sluice user add --key FILE` and `sluice user key add NAME FILE|-` read a
 * public key: one line (the API takes 16 KiB at most). The whole file was
 * read before anything was looked at, so an endless input (`--key -` from a
 * pipe that does not end, /dev/zero, a log file given by mistake) was read
 * until memory ran out: /dev/zero reached 8 GiB RSS in a minute.
 */
describe('a key file is read up to a bound, not to its end', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-key-file-'));
    const r = sluice(dir, ['user', 'add', 'kim', '--generate-password']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('key add NAME - on a pipe that keeps sending: refused at once, one clear line, exit 2', { timeout: 60_000 }, async () => {
    const child = spawn(process.execPath, [BIN, 'user', 'key', 'add', 'kim', '-'], { cwd: dir, env: { ...process.env, SLUICE_LOG_LEVEL: 'warn' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.stdin.on('error', () => undefined);
    // 64 MiB, then the pipe is held open: an input that has not ended.
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let sent = 0;
    const pump = () => {
      while (sent < 64 && child.exitCode === null && child.stdin.write(chunk)) sent++;
    };
    child.stdin.on('drain', () => {
      sent++;
      pump();
    });
    pump();
    const code = await new Promise<number | null | 'timeout'>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('timeout');
      }, 15_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 2, `exit ${code} after ${sent} MiB sent; stderr: ${stderr}`);
    assert.match(stderr, /^sluice: key file -: larger than 65536 bytes, not a public key\n$/);
  });

  it('a file that is not there, or a directory, is still one clear line', () => {
    assert.match(sluice(dir, ['user', 'key', 'add', 'kim', join(dir, 'none.pub')]).stderr, /^sluice: cannot read key file .*none\.pub: ENOENT\n$/);
    assert.match(sluice(dir, ['user', 'key', 'add', 'kim', dir]).stderr, /^sluice: cannot read key file .*: EISDIR\n$/);
  });
});
