import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { freePort } from './helpers/server.js';

// journald's or a supervisor's pipe can die while the server runs: the server
// must keep serving, and still stop cleanly on SIGTERM.

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup(ftpPort: number): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-epipe-'));
  dirs.push(dir);
  const config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    `dataDir: ${join(dir, 'data')}\nbind: 127.0.0.1\nftp: {port: ${ftpPort}, implicitTlsPort: 0}\nsftp: {port: 0}\nlogLevel: info\n`,
  );
  return { dir, config };
}

/** `sluice serve` whose stdout reader is gone from the start, as `sluice serve | head -c 0` would leave it. */
function serveWithDeadStdout(dir: string, config: string) {
  const child = spawn(process.execPath, [BIN, '--config', config, 'serve'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, exited, stderr: () => stderr };
}

/** The greeting code once the FTP port answers; fails when the server exits first. */
async function greetingOnceUp(port: number, exited: Promise<number | null>, stderr: () => string): Promise<number> {
  let dead = false;
  void exited.then(() => (dead = true));
  for (let i = 0; i < 240; i++) {
    if (dead) assert.fail(`server exited before serving:\n${stderr()}`);
    const code = await RawFtp.greeting(port, '127.0.0.1');
    if (code !== 'closed') return code;
    await new Promise((r) => setTimeout(r, 250));
  }
  return assert.fail('server never answered');
}

async function exitCodeWithin(exited: Promise<number | null>, ms: number): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), ms)));
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

for (const users of [false, true]) {
  test(`serve with a dead stdout (${users ? 'with users' : 'fresh data dir'}) keeps serving and stops on SIGTERM`, async () => {
    const port = await freePort();
    const { dir, config } = setup(port);
    if (users) {
      const r = sluice(dir, ['--config', config, 'user', 'add', 'alice', '--password-stdin'], 'secretpw1\n');
      assert.equal(r.code, 0, r.stderr);
    }
    const srv = serveWithDeadStdout(dir, config);
    try {
      // By the time it answers, "No users yet" and "listening: ftp" went to the dead pipe.
      assert.equal(await greetingOnceUp(port, srv.exited, srv.stderr), 220);
      // A connection logs too; the server must answer the next one all the same.
      await new Promise((r) => setTimeout(r, 500));
      const ftp = await RawFtp.connect(port);
      assert.equal((await ftp.read(5000))?.code, 220);
      ftp.close();
      srv.child.kill('SIGTERM');
      assert.equal(await exitCodeWithin(srv.exited, 15_000), 0, srv.stderr());
    } finally {
      srv.child.kill('SIGKILL');
    }
  });
}

test('a fatal log line with a dead stdout does not hang the process', async () => {
  // The lines before it are still queued when the fatal one comes, as at a failed start.
  const script = `
    import { createLogger } from ${JSON.stringify(new URL('../src/audit/log.ts', import.meta.url).href)};
    const log = createLogger('info');
    log.info('one');
    log.info('two');
    log.fatal('could not start');
    process.exitCode = 3;
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout.destroy();
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  try {
    assert.equal(await exitCodeWithin(exited, 20_000), 3);
  } finally {
    child.kill('SIGKILL');
  }
});
