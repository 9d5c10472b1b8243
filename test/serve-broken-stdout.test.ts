import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { freePort } from './helpers/server.js';

// journald's or a supervisor's pipe can die while the server runs, and so can
// the terminal of a server started by hand: the server must keep serving, and
// still stop cleanly on SIGTERM.

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** `ftp`: more settings of the FTP front-end, as YAML map entries. */
function setup(ftpPort: number, ftp = ''): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-epipe-'));
  dirs.push(dir);
  const config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    `dataDir: ${join(dir, 'data')}\nbind: 127.0.0.1\nftp: {port: ${ftpPort}, implicitTlsPort: 0${ftp}}\nsftp: {port: 0}\nlogLevel: info\n`,
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
    import { createLogger } from ${JSON.stringify(new URL('../src/audit/log.js', import.meta.url).href)};
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

/**
 * Runs argv[1:] with a new pseudo-terminal as its controlling terminal and its
 * stdin, stdout and stderr, as a shell in a terminal window would; prints its
 * pid; shows what it writes on our stderr; closes the terminal (a hang-up:
 * the kernel sends the server SIGHUP, and its writes fail with EIO) on a line
 * from stdin; then prints "exit <code>" once it has ended (-<signal> if killed).
 */
const ON_A_TERMINAL = `
import os, pty, select, sys
pid, master = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
print(pid, flush=True)
watched = [master, 0]
while True:
    ready = select.select(watched, [], [])[0]
    if 0 in ready:
        os.read(0, 64)
        break
    try:
        shown = os.read(master, 65536)
    except OSError:
        shown = b''
    if shown:
        os.write(2, shown)
    else:
        watched.remove(master)
os.close(master)
print('exit', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
`;

test('serve on a terminal that closes keeps serving and stops on SIGTERM', async () => {
  // Found by a new user's try: `npx sluice serve` in a terminal, the terminal closed. npm went with it,
  // the server got the kernel's SIGHUP (a reload: a log line), the write of that line to the closed
  // terminal failed with EIO, thrown as uncaught, and at the exit that followed pino's flush tried it
  // again for ever: the FTP port still accepted connections but greeted none, SIGTERM did nothing.
  // And a server that did stop on a closed terminal was aborted by Node at its exit (SIGABRT).
  const port = await freePort();
  // TLS optional: a failed login without it is a log line (below).
  const { dir, config } = setup(port, ', tls: optional');
  const helper = spawn('python3', ['-c', ON_A_TERMINAL, process.execPath, BIN, '--config', config, 'serve'], {
    cwd: dir,
    env: { ...process.env, SLUICE_WORKERS: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let shown = '';
  helper.stderr.on('data', (d: Buffer) => (shown += d));
  const said = createInterface({ input: helper.stdout })[Symbol.asyncIterator]();
  const pid = Number((await said.next()).value);
  assert.ok(pid > 0, shown);
  let ended = false;
  const exited = said.next().then(({ value }) => {
    ended = true;
    return typeof value === 'string' && value.startsWith('exit ') ? Number(value.slice(5)) : null;
  });
  try {
    assert.equal(await greetingOnceUp(port, exited, () => shown), 220);
    for (let i = 0; i < 50 && !shown.includes('sluice started'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(shown, /INFO.*sluice started/, 'pretty lines on the terminal');
    helper.stdin.write('hang up\n');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await RawFtp.greeting(port, '127.0.0.1'), 220, 'served after the SIGHUP of the hang-up');
    // A failed login is a log line: its write fails as well, and the server answers the next client all the same.
    const ftp = await RawFtp.connect(port);
    assert.equal((await ftp.read(5000))?.code, 220);
    assert.equal((await ftp.login('nobody', 'wrong')).code, 530);
    ftp.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await RawFtp.greeting(port, '127.0.0.1'), 220, 'served after a line written to the closed terminal');
    process.kill(pid, 'SIGTERM');
    assert.equal(await exitCodeWithin(exited, 5000), 0, 'stopped: not hung, not aborted (-6)');
  } finally {
    if (!ended) process.kill(pid, 'SIGKILL');
    helper.kill('SIGKILL');
  }
});
