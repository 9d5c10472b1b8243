import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RateLimit } from '../src/session/rate-limit.js';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;
const SIZE = 20 * MiB;
/** 20 MiB at 5 MiB/s: 4 s, less the bucket's first burst (0.1 s); ±10%. */
const [LOW, HIGH] = [3.6, 4.4];

describe('RateLimit', () => {
  it('lets a burst of a tenth of a second through, then charges the rest in time', () => {
    const r = new RateLimit(5 * MiB);
    assert.equal(r.delay(512 * 1024), 0, 'the burst');
    const wait = r.delay(5 * MiB);
    assert.ok(wait > 990 && wait <= 1001, `one second for 5 MiB more, got ${wait}`);
    assert.ok(r.delay(1) > 990, 'a later taker queues behind the debt');
  });
  it('keeps a burst of at least 64 KiB at low rates', () => {
    assert.equal(new RateLimit(1000).delay(64 * 1024), 0);
  });
  it("ends a wait when its signal aborts, with the signal's reason, and leaves no timer behind", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const ending = new AbortController();
    const reason = new Error('session closed');
    // A debt of three days at 1 byte/s.
    const wait = new RateLimit(1).take(256 * 1024, ending.signal);
    assert.equal(timers(), before + 1);
    ending.abort(reason);
    await assert.rejects(wait, (err) => err === reason);
    assert.equal(timers(), before);
    await assert.rejects(new RateLimit(1).take(256 * 1024, ending.signal), (err) => err === reason, 'aborted already');
    assert.equal(timers(), before);
  });
});

/** Seconds the transfer itself took, as curl measured it (after connect and login). */
function curl(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', ['-sS', '-o', '/dev/null', '-w', '%{time_pretransfer} %{time_total}', ...args]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`curl ${code}: ${err}`));
      const [pre, total] = out.split(' ').map(Number) as [number, number];
      resolve(total - pre);
    });
  });
}

describe('bandwidth limits: per user and the server default, over FTP, FTPS and SFTP', () => {
  let srv: TestServer;
  let local: string;
  let file: string;
  const url = (scheme: string, port: number, user: string, path: string) => `${scheme}://${user}:${user}%20password@127.0.0.1:${port}${path}`;
  const ftp = (user: string, path: string) => url('ftp', srv.ftpPort, user, path);
  const ftps = (user: string, path: string) => url('ftps', srv.ftpsPort, user, path);
  const tls = ['-k'];

  async function sftpTimed(user: string, op: 'put' | 'get', path: string): Promise<number> {
    const c = await sshConnect({ port: srv.sftpPort, username: user, password: `${user} password` });
    try {
      const s = await sftpOf(c);
      const t0 = performance.now();
      if (op === 'put') await call((cb) => s.fastPut(file, path, { concurrency: 64 }, cb));
      else await call((cb) => s.fastGet(path, join(local, `${user}-back.bin`), { concurrency: 64 }, cb));
      return (performance.now() - t0) / 1000;
    } finally {
      c.end();
    }
  }

  before(async () => {
    local = mkdtempSync(join(tmpdir(), 'sluice-rate-'));
    file = join(local, 'twenty.bin');
    writeFileSync(file, randomBytes(SIZE));
    srv = await TestServer.start({
      // Downloads are limited by the server's default, uploads only for `slow`, who has a limit of its own.
      yaml: 'ftp:\n  tls: optional\nlimits:\n  rateDown: 5M\n',
      users: [
        { name: 'slow', password: 'slow password', args: ['--rate-up', '5M'] },
        { name: 'fast', password: 'fast password', args: ['--rate-down', '0'] },
        { name: 'capped', password: 'capped password', args: ['--rate-up', '5M', '--quota-bytes', '1M'] },
      ],
    });
    for (const name of ['ftp.bin', 'ftps.bin', 'sftp.bin']) writeFileSync(join(srv.home('slow'), name), readFileSync(file));
    writeFileSync(join(srv.home('fast'), 'fast.bin'), readFileSync(file));
  });
  after(async () => {
    await srv?.stop();
    rmSync(local, { recursive: true, force: true });
  });

  it('`user show` says where each limit comes from', () => {
    const show = (name: string) => sluice(srv.dir, ['user', 'show', name]).stdout;
    assert.match(show('slow'), /rate up\s+5242880 bytes\/s\nrate down\s+server default/);
    assert.match(show('fast'), /rate up\s+server default\nrate down\s+unlimited/);
    assert.match(sluice(srv.dir, ['user', 'set', 'fast', '--rate-up', 'fast']).stderr, /--rate-up: "fast" is not a size/);
  });

  it('uploads of a limited user take 4 s for 20 MiB at 5 MiB/s on each protocol; an unlimited user alongside is not slowed', async (t) => {
    const [ftpUp, ftpsUp, sftpUp, other] = await Promise.all([
      curl(['-T', file, ftp('slow', '/up-ftp.bin')]),
      curl([...tls, '--ssl-reqd', '-T', file, ftps('slow', '/up-ftps.bin')]),
      sftpTimed('slow', 'put', '/up-sftp.bin'),
      curl(['-T', file, ftp('fast', '/up-fast.bin')]),
    ]);
    for (const [what, s] of [['FTP', ftpUp], ['FTPS', ftpsUp], ['SFTP', sftpUp]] as const) {
      t.diagnostic(`${what} upload: ${s.toFixed(2)} s`);
      assert.ok(s >= LOW && s <= HIGH, `${what} upload took ${s.toFixed(2)} s`);
    }
    t.diagnostic(`unlimited: ${other.toFixed(2)} s`);
    assert.ok(other < 2, `the unlimited user's upload took ${other.toFixed(2)} s`);
    for (const name of ['up-ftp.bin', 'up-ftps.bin', 'up-sftp.bin']) assert.deepEqual(readFileSync(join(srv.home('slow'), name)), readFileSync(file));
  });

  it('legacy SCP keeps the same limits (the server measures the transfer: 20 MiB up in 4 s)', async (t) => {
    if (spawnSync('sh', ['-c', 'command -v sshpass']).status !== 0) {
      if (process.env.CI) assert.fail('sshpass must be installed in CI');
      return t.skip('sshpass is not installed (.ci/run installs it)');
    }
    const opts = ['-O', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=no', '-P', String(srv.sftpPort)];
    const r = spawnSync('sshpass', ['-p', 'slow password', 'scp', ...opts, file, 'slow@127.0.0.1:/up-scp.bin'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const rec = (await srv.audit()).find((l) => l.event === 'upload' && l.path === '/up-scp.bin');
    const seconds = Number(rec?.duration_ms) / 1000;
    t.diagnostic(`SCP upload: ${seconds.toFixed(2)} s`);
    assert.equal(rec?.protocol, 'scp');
    assert.ok(seconds >= LOW && seconds <= HIGH, `SCP upload took ${seconds.toFixed(2)} s`);
  });

  it('SCP: what a client sends after its file was refused is dropped at the same rate (20 MiB, refused at 1 MiB: still about 4 s)', async (t) => {
    // Found by an adversarial review: the rest of a refused file was read and dropped as fast as it came (8 MiB/s at 200 KiB/s).
    if (spawnSync('sh', ['-c', 'command -v sshpass']).status !== 0) {
      if (process.env.CI) assert.fail('sshpass must be installed in CI');
      return t.skip('sshpass is not installed (.ci/run installs it)');
    }
    const opts = ['-O', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=no', '-P', String(srv.sftpPort)];
    const t0 = performance.now();
    const r = spawnSync('sshpass', ['-p', 'capped password', 'scp', ...opts, file, 'capped@127.0.0.1:/over.bin'], { encoding: 'utf8', timeout: 60_000 });
    const seconds = (performance.now() - t0) / 1000;
    t.diagnostic(`refused SCP upload: ${seconds.toFixed(2)} s`);
    assert.notEqual(r.status, 0, 'the upload over the quota is refused');
    assert.ok(seconds >= 3, `the refused upload's bytes went through in ${seconds.toFixed(2)} s`);
    assert.ok((await srv.audit()).some((l) => l.event === 'quota-exceeded' && l.path === '/over.bin'));
  });

  it('downloads follow the server default (5 MiB/s) unless the user has their own (0: none)', async (t) => {
    const [ftpDown, ftpsDown, sftpDown, other] = await Promise.all([
      curl([ftp('slow', '/ftp.bin')]),
      curl([...tls, '--ssl-reqd', ftps('slow', '/ftps.bin')]),
      sftpTimed('slow', 'get', '/sftp.bin'),
      curl([ftp('fast', '/fast.bin')]),
    ]);
    for (const [what, s] of [['FTP', ftpDown], ['FTPS', ftpsDown], ['SFTP', sftpDown]] as const) {
      t.diagnostic(`${what} download: ${s.toFixed(2)} s`);
      assert.ok(s >= LOW && s <= HIGH, `${what} download took ${s.toFixed(2)} s`);
    }
    t.diagnostic(`unlimited: ${other.toFixed(2)} s`);
    assert.ok(other < 2, `the unlimited user's download took ${other.toFixed(2)} s`);
    assert.deepEqual(readFileSync(join(local, 'slow-back.bin')), readFileSync(file));
  });
});
