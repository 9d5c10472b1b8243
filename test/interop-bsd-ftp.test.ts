import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/**
 * The BSD ftp clients, Debian's `ftp` (tnftp) and inetutils-ftp, abort a transfer as 4.3BSD did: IAC IP,
 * then IAC sent as urgent data, then DM ABOR. The kernel takes the urgent byte out of the stream, and the
 * server reads IAC IP, DM, ABOR.
 */
/** Larger than any loopback download gets in the test's time, and sparse: it costs no disk. */
const SIZE = 8 * 1024 ** 3;

describe('BSD ftp clients abort a download with ABOR', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'bsd', password: 'bsd-password' }] });
    for (const name of ['inetutils.bin', 'tnftp.bin']) {
      writeFileSync(join(srv.home('bsd'), name), '');
      truncateSync(join(srv.home('bsd'), name), SIZE);
    }
  });
  after(() => srv.stop());

  /** The download's audit record, once the server wrote it. */
  async function downloadRecord(name: string): Promise<Record<string, unknown> | undefined> {
    const records = await srv.auditUntil((r) => r.event === 'download' && r.path === `/${name}`);
    return records.find((r) => r.event === 'download' && r.path === `/${name}`);
  }

  // inetutils-ftp sends ABOR when it cannot open the local file after the 150, then drains the data
  // connection and reads two replies. The DM read as text made `\xf2ABOR`: 500, the download went on,
  // and the client read all of it (the server then waited 30 s for its close).
  it('inetutils-ftp: a local file it cannot write aborts the download (426, then 226)', { skip: programMissing('inetutils-ftp') }, async () => {
    const script = 'user bsd bsd-password\nbinary\npassive\nget inetutils.bin /nonexistent/inetutils.bin\npwd\nbye\n';
    const r = spawnSync('inetutils-ftp', ['-n', '-v', '127.0.0.1', String(srv.ftpPort)], { input: script, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.error, undefined, `${r.error?.message}\n${r.stdout}`);
    assert.match(r.stdout, /^150 .*\n(?:.*\n)?426 .*\n226 ABOR successful\.\n257 "\/"/m, r.stdout);
    const record = await downloadRecord('inetutils.bin');
    assert.equal(record?.result, 'aborted');
    assert.ok(Number(record?.bytes) < SIZE, `sent ${String(record?.bytes)} bytes`);
  });

  // tnftp, in a terminal (script(1)), interrupted by ^C while it downloads.
  it('tnftp: ^C during a download aborts it (426, then 226)', { skip: programMissing('tnftp') || programMissing('script', 'bsdutils') }, async () => {
    const child = spawn('script', ['-q', '-c', `tnftp -n -v 127.0.0.1 ${srv.ftpPort}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8').replaceAll('\r', '')));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const until = async (pattern: RegExp) => {
      const end = Date.now() + 15_000;
      while (!pattern.test(out) && Date.now() < end && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
      assert.match(out, pattern);
    };
    try {
      child.stdin.write('user bsd bsd-password\nbinary\npassive on\nget tnftp.bin /dev/null\n');
      await until(/^150 /m);
      child.stdin.write('\x03');
      await until(/^(226|500) /m);
      child.stdin.write('pwd\nbye\n');
      await until(/^221 /m);
      assert.match(out, /^426 .*\n226 ABOR successful\.\n/m, out);
    } finally {
      child.kill();
      await exited;
    }
    const record = await downloadRecord('tnftp.bin');
    assert.equal(record?.result, 'aborted');
    assert.ok(Number(record?.bytes) < SIZE, `sent ${String(record?.bytes)} bytes`);
  });
});
