import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sluice, sluiceAsync, startServe } from './helpers/cli.js';
import { withRunCertificates } from './helpers/server.js';

/**
 * Found in a new user's try: a second `npm start` on a data directory already
 * served wrote its `audit-start` into the running server's trail, with the
 * sequence number the running server used next, then failed on EADDRINUSE;
 * `sluice audit verify` failed from there on ("sequence goes back"). Nothing
 * kept a second server out. Now the first holds the data directory's lock
 * and its trail's, and a second refuses before writing anything.
 */
const root = mkdtempSync(join(tmpdir(), 'sluice-lock-'));
after(() => rmSync(root, { recursive: true, force: true }));
const env = { SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: '0', SLUICE_BIND: '127.0.0.1', SLUICE_LOG_LEVEL: 'info' };
const STARTED = /sluice started/;

function place(name: string, yaml = ''): string {
  const dir = join(root, name);
  mkdirSync(dir);
  // Keys are no part of what is tested here: the run's, not a new set per directory.
  withRunCertificates(dir);
  if (yaml) writeFileSync(join(dir, 'sluice.yaml'), yaml);
  assert.equal(sluice(dir, ['user', 'add', 'mira', '--generate-password'], undefined, env).code, 0);
  return dir;
}

function verified(dir: string, trail = join(dir, 'data/audit.log')): void {
  const verify = sluice(dir, ['audit', 'verify', trail], undefined, env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /chain intact/);
}

describe('one sluice serve per data directory and per audit trail', () => {
  it('a second serve on a served data directory refuses, naming the first, and writes nothing; the chain verifies', { timeout: 90_000 }, async (t) => {
    const dir = place('twice');
    const first = startServe(dir, env, STARTED);
    t.after(() => first.stop());
    await first.ready;
    const trail = readFileSync(join(dir, 'data/audit.log'));
    const second = sluice(dir, ['serve'], undefined, env);
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(second.stdout, new RegExp(`data is already served by pid ${first.child.pid}: stop that server first`));
    assert.deepEqual(readFileSync(join(dir, 'data/audit.log')), trail, 'the refused server wrote to the trail');
    assert.equal(first.child.exitCode, null, 'the first server stopped');
    assert.equal(await first.stop(), 0);
    assert.ok(!existsSync(join(dir, 'data/serve.pid')), 'the pid file outlived a clean stop');
    verified(dir);
  });

  it('a server killed outright leaves no lock behind: the next one starts', { timeout: 90_000 }, async (t) => {
    const dir = place('killed');
    const killed = startServe(dir, { ...env, SLUICE_WORKERS: '1' }, STARTED);
    t.after(() => killed.stop());
    await killed.ready;
    killed.child.kill('SIGKILL');
    await new Promise((r) => killed.child.once('exit', r));
    assert.equal(readFileSync(join(dir, 'data/serve.pid'), 'utf8'), `${killed.child.pid}\n`);
    const next = startServe(dir, env, STARTED);
    t.after(() => next.stop());
    await next.ready;
    assert.equal(readFileSync(join(dir, 'data/serve.pid'), 'utf8'), `${next.child.pid}\n`);
    assert.equal(await next.stop(), 0);
    verified(dir);
  });

  it('two data directories whose configs name one trail: the second refuses', { timeout: 90_000 }, async (t) => {
    const trail = join(root, 'shared-logs', 'audit.log');
    const yaml = `audit:\n  file: ${trail}\n`;
    const [a, b] = [place('a', yaml), place('b', yaml)];
    const first = startServe(a, env, STARTED);
    t.after(() => first.stop());
    await first.ready;
    const before = readFileSync(trail);
    const second = sluice(b, ['serve'], undefined, env);
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(second.stdout, /audit\.log is already written by another sluice serve .*one trail takes one writer/);
    assert.deepEqual(readFileSync(trail), before, 'the refused server wrote to the trail');
    assert.equal(await first.stop(), 0);
    verified(a, trail);
    // Its own data directory was let go of with the trail's refusal.
    const later = startServe(b, { ...env, SLUICE_WORKERS: '1' }, STARTED);
    t.after(() => later.stop());
    await later.ready;
    assert.equal(await later.stop(), 0);
  });

  it("a config that names another data directory's own trail: the second refuses", { timeout: 90_000 }, async (t) => {
    // Found by a review: a trail inside its server's data directory was guarded by serve.lock alone, which a
    // server with another data directory never takes; both served, and verify failed ("sequence goes back").
    const owner = place('owner');
    const trail = join(owner, 'data', 'audit.log');
    const other = place('other', `audit:\n  file: ${trail}\n`);
    const first = startServe(owner, env, STARTED);
    t.after(() => first.stop());
    await first.ready;
    const before = readFileSync(trail);
    const second = sluice(other, ['serve'], undefined, env);
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(second.stdout, /audit\.log is already written by another sluice serve/);
    assert.deepEqual(readFileSync(trail), before, 'the refused server wrote to the trail');
    assert.equal(await first.stop(), 0);
    verified(owner, trail);
  });
  it('a FIFO in the pid file\'s place holds neither a command nor the stop', { timeout: 90_000 }, async (t) => {
    // The pid file is only ever read for a note or to remove one's own: read with a plain blocking read, a
    // FIFO there (the data directory's owner can put one) held `user disable` and the server's stop for ever.
    const dir = place('fifo');
    const server = startServe(dir, { ...env, SLUICE_WORKERS: '1' }, STARTED);
    const pidFile = join(dir, 'data/serve.pid');
    t.after(async () => {
      // Failed: whatever still reads the FIFO gets its end of file, so that nothing outlives the test.
      for (let readers = 0; readers < 3; readers++) {
        try {
          closeSync(openSync(pidFile, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          break; // ENXIO: no reader (ENOENT: no FIFO).
        }
      }
      rmSync(pidFile, { force: true });
      await server.stop();
    });
    await server.ready;
    rmSync(pidFile);
    execFileSync('mkfifo', [pidFile]);
    const within = <T>(ms: number, what: string, p: Promise<T>): Promise<T> =>
      Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} still waits after ${ms} ms`)), ms).unref())]);
    const disable = await within(20_000, 'user disable', sluiceAsync(dir, ['user', 'disable', 'mira'], env));
    assert.equal(disable.code, 0, disable.stdout + disable.stderr);
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
    server.child.kill('SIGTERM');
    assert.equal(await within(20_000, 'the stop', exited), 0);
    assert.ok(lstatSync(pidFile).isFIFO(), 'what was not its pid file was removed');
    verified(dir);
  });
});
