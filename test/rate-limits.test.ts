import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client } from 'basic-ftp';
import type ssh2 from 'ssh2';
import { ConnectionBudgets } from '../src/session/connection-budgets.js';
import { RateLimit, pieces } from '../src/session/rate-limit.js';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;
const SIZE = 20 * MiB;
/**
 * 20 MiB at 5 MiB/s: 4 s, less the bucket's first burst (0.1 s); 10% less at
 * most (a limit let through is the defect this guards), 7.5 s at most (CI on 2
 * busy cores, four clients at once: 3.91-4.16 s in three runs, 4.08 to
 * 4.66 s in one whose whole suite ran 10 % slower, and an SFTP upload 5.21 s
 * and 6.20 s in runs with other tests beside the suite, at a load of 5;
 * a limiter that halved the rate would take 8 s).
 */
const [LOW, HIGH] = [3.6, 7.5];

describe('RateLimit', () => {
  it('lets a burst of a tenth of a second through, then charges the rest in time', () => {
    const r = new RateLimit(5 * MiB);
    assert.equal(r.delay(512 * 1024), 0, 'the burst');
    const wait = r.delay(5 * MiB);
    assert.ok(wait > 990 && wait <= 1001, `one second for 5 MiB more, got ${wait}`);
    assert.ok(r.delay(1) > 990, 'a later taker queues behind the debt');
  });
  it('keeps its burst at a tenth of a second down to 1 KiB, and a second of bytes below 1 KiB/s (down to 1 byte/s)', () => {
    // Found by a new user's try of the README: a burst of at least 64 KiB let a small file through unslowed.
    for (const [rate, burst] of [[5 * MiB, 512 * 1024], [8192, 1024], [2048, 1024], [1000, 1000], [1, 1]] as const) {
      assert.equal(new RateLimit(rate).burst, burst, `burst at ${rate} bytes/s`);
    }
    const r = new RateLimit(8192);
    assert.equal(r.delay(1024), 0, 'the burst');
    const wait = r.delay(1024);
    assert.ok(wait > 120 && wait <= 126, `1 KiB more waits 1/8 s, got ${wait}`);
  });
  it('cuts a chunk into pieces of its burst, each let through when it may move', async () => {
    const r = new RateLimit(10 * 1024);
    const t0 = performance.now();
    const sizes: number[] = [];
    for await (const piece of pieces(r, Buffer.alloc(5000))) sizes.push(piece.length);
    const ms = performance.now() - t0;
    assert.deepEqual(sizes, [1024, 1024, 1024, 1024, 904]);
    // 1 KiB at once, the rest at 10 KiB/s: 0.39 s.
    assert.ok(ms > 350 && ms < 600, `took ${ms} ms`);
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
  it('gives back what aborted waits took: the next transfer on the bucket does not wait out their debt', async () => {
    const r = new RateLimit(8192);
    const ending = new AbortController();
    // 32 pipelined SFTP READs of a session that closes: four seconds of debt at 8 KiB/s.
    const waits = Array.from({ length: 32 }, () => r.next(32768, ending.signal).catch(() => 'aborted'));
    ending.abort(new Error('closed'));
    assert.deepEqual(new Set(await Promise.all(waits)), new Set(['aborted', 1024]));
    const started = performance.now();
    await r.next(1024);
    const ms = performance.now() - started;
    // About 125 ms (1 KiB at 8 KiB/s; the whole case took 124 to 219 ms in 22 full runs); the debt not given back is 4 s.
    assert.ok(ms < 2000, `the next KiB waited ${ms.toFixed(0)} ms`);
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

describe('ConnectionBudgets', () => {
  it("shares a connection's budget among its sessions, at the limits each opened with, and lets it go with the last", () => {
    const budgets = new ConnectionBudgets({ up: 0, down: 5 * MiB, hash: 4 * MiB });
    const user = { rateUp: null, rateDown: null };
    const a = budgets.join('conn-1', user);
    const b = budgets.join('conn-1', user);
    const other = budgets.join('conn-2', user);
    assert.equal(a.rates, b.rates, 'two channels of one connection');
    assert.equal(a.hashing, b.hashing);
    assert.notEqual(a.rates, other.rates, 'another connection');
    assert.notEqual(a.hashing, other.hashing);
    assert.equal(a.rates.up, null);
    assert.equal(a.rates.down?.bytesPerSecond, 5 * MiB);
    const changed = budgets.join('conn-1', { rateUp: 1024, rateDown: null });
    assert.notEqual(changed.rates, a.rates, 'a session opened after the limits changed keeps the new ones');
    assert.equal(changed.rates.up?.bytesPerSecond, 1024);
    // Found by a review: keyed by the limits too, the hashing turns split, and the connection hashed at twice the rate.
    assert.equal(changed.hashing, a.hashing, 'but hashes in the connection\'s turns');
    assert.equal(budgets.size, 2);
    a.leave();
    const again = budgets.join('conn-1', user);
    assert.equal(again.rates, b.rates, 'still held by the other session');
    for (const leaving of [again, b, other, changed]) leaving.leave();
    assert.equal(budgets.size, 0, 'nothing kept once the sessions are gone');
  });
});

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
    const rec = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/up-scp.bin')).find((l) => l.event === 'upload' && l.path === '/up-scp.bin');
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
    const over = (l: Record<string, unknown>) => l.event === 'quota-exceeded' && l.path === '/over.bin';
    assert.ok((await srv.auditUntil(over)).some(over));
  });

  // Found by a review: each SSH channel was a session with limits of its own, so a user limited to 1 MiB/s
  // read at 8.5 MiB/s on eight channels of one connection. The channels of a connection share one budget.
  it('SFTP channels of one connection share its limits: 4 × 5 MiB each way on four channels at 5 MiB/s take 4 s', async (t) => {
    const part = join(local, 'five.bin');
    writeFileSync(part, randomBytes(5 * MiB));
    for (let i = 0; i < 4; i++) writeFileSync(join(srv.home('slow'), `part${i}.bin`), readFileSync(part));
    const c = await sshConnect({ port: srv.sftpPort, username: 'slow', password: 'slow password' });
    try {
      const channels = await Promise.all([0, 1, 2, 3].map(() => sftpOf(c)));
      const timed = async (each: (s: ssh2.SFTPWrapper, i: number) => Promise<void>) => {
        const t0 = performance.now();
        await Promise.all(channels.map(each));
        return (performance.now() - t0) / 1000;
      };
      const down = await timed((s, i) => call((cb) => s.fastGet(`/part${i}.bin`, join(local, `part${i}-back.bin`), { concurrency: 64 }, cb)));
      const up = await timed((s, i) => call((cb) => s.fastPut(part, `/part${i}-up.bin`, { concurrency: 64 }, cb)));
      t.diagnostic(`four channels: down ${down.toFixed(2)} s, up ${up.toFixed(2)} s`);
      assert.ok(down >= LOW && down <= HIGH, `20 MiB down on four channels took ${down.toFixed(2)} s`);
      assert.ok(up >= LOW && up <= HIGH, `20 MiB up on four channels took ${up.toFixed(2)} s`);
    } finally {
      c.end();
    }
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(readFileSync(join(local, `part${i}-back.bin`)), readFileSync(part));
      assert.deepEqual(readFileSync(join(srv.home('slow'), `part${i}-up.bin`)), readFileSync(part));
    }
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
    // 64 READs in flight, each waiting on the rate with a listener on the transfer's signal (found by a review).
    assert.doesNotMatch(srv.stderr, /MaxListenersExceededWarning/);
  });
});

/** When (ms since the start) the bytes so far numbered `total`. */
type Arrival = { ms: number; total: number };

describe('a low rate (8 KiB/s) holds small files to it, in steps, both ways, over FTP, FTPS and SFTP', () => {
  // Found by a new user's try of the README: at 8 KiB/s an FTPS download sent nothing for 23 s, then 256 KiB at
  // once; a file under 64 KiB (the old least burst) was not slowed at all. All five run at once, one session each.
  const RATE = 8 * 1024;
  const SMALL = 40 * 1024;
  /** 40 KiB at 8 KiB/s, less the first burst (1 KiB): 4.9 s; ±20%. */
  const EXPECTED = (SMALL - 1024) / RATE;
  let srv: TestServer;
  let local: string;
  const data = randomBytes(SMALL);

  before(async () => {
    local = mkdtempSync(join(tmpdir(), 'sluice-rate-low-'));
    writeFileSync(join(local, 'small.bin'), data);
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      users: [{ name: 'trickle', password: 'trickle password', args: ['--rate-down', '8K', '--rate-up', '8K'] }],
    });
    for (const name of ['ftp.bin', 'ftps.bin', 'sftp.bin']) writeFileSync(join(srv.home('trickle'), name), data);
    for (const dir of ['ftp-in', 'sftp-in']) mkdirSync(join(srv.home('trickle'), dir));
  });
  after(async () => {
    await srv?.stop();
    rmSync(local, { recursive: true, force: true });
  });

  /** Records each arrival of bytes, from `t0`. */
  const recorder = (t0: number) => {
    const arrivals: Arrival[] = [];
    let total = 0;
    return { arrivals, add: (n: number) => arrivals.push({ ms: performance.now() - t0, total: (total += n) }) };
  };

  async function ftpGet(secure: boolean, path: string): Promise<Arrival[]> {
    const client = new Client(30_000);
    try {
      await client.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'trickle', password: 'trickle password', secure, secureOptions: { rejectUnauthorized: false } });
      const r = recorder(performance.now());
      const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (r.add(chunk.length), done()) });
      await client.downloadTo(sink, path);
      return r.arrivals;
    } finally {
      client.close();
    }
  }

  async function sftpGet(path: string): Promise<Arrival[]> {
    const c = await sshConnect({ port: srv.sftpPort, username: 'trickle', password: 'trickle password' });
    try {
      const s = await sftpOf(c);
      const r = recorder(performance.now());
      // 64 READs of 32 KiB in flight, as in the test above: each answered with at most a burst.
      await call((cb) => s.fastGet(path, join(local, 'sftp-back.bin'), { concurrency: 64, step: (_total, n) => r.add(n) }, cb));
      return r.arrivals;
    } finally {
      c.end();
    }
  }

  /**
   * An upload's growth as the largest file in `dir` shows it (the staged one, then the named), looked at
   * every 50 ms from `put`'s call (once logged in) until it resolves.
   */
  async function watched(dir: string, put: () => Promise<void>): Promise<{ arrivals: Arrival[]; seconds: number }> {
    const t0 = performance.now();
    const arrivals: Arrival[] = [];
    const look = () => {
      const largest = Math.max(0, ...readdirSync(dir).map((name) => statSync(join(dir, name), { throwIfNoEntry: false })?.size ?? 0));
      if (largest > (arrivals.at(-1)?.total ?? 0)) arrivals.push({ ms: performance.now() - t0, total: largest });
    };
    const timer = setInterval(look, 50);
    try {
      await put();
    } finally {
      clearInterval(timer);
    }
    look();
    return { arrivals, seconds: (performance.now() - t0) / 1000 };
  }

  async function ftpPut(dir: string, path: string): Promise<{ arrivals: Arrival[]; seconds: number }> {
    const client = new Client(30_000);
    try {
      await client.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'trickle', password: 'trickle password' });
      return await watched(dir, async () => void (await client.uploadFrom(Readable.from([data]), path)));
    } finally {
      client.close();
    }
  }

  async function sftpPut(dir: string, path: string): Promise<{ arrivals: Arrival[]; seconds: number }> {
    const c = await sshConnect({ port: srv.sftpPort, username: 'trickle', password: 'trickle password' });
    try {
      const s = await sftpOf(c);
      return await watched(dir, () => call((cb) => s.fastPut(join(local, 'small.bin'), path, { concurrency: 64 }, cb)));
    } finally {
      c.end();
    }
  }

  /** All of it, in about SMALL / RATE seconds, from early on in several steps with no pause over a second. */
  function assertSteady(what: string, arrivals: Arrival[], t: { diagnostic: (s: string) => void }): void {
    const last = arrivals.at(-1);
    const first = arrivals[0];
    assert.ok(first && last, `${what}: nothing arrived`);
    let gap = 0;
    let step = first.total;
    for (let i = 1; i < arrivals.length; i++) {
      gap = Math.max(gap, arrivals[i]!.ms - arrivals[i - 1]!.ms);
      step = Math.max(step, arrivals[i]!.total - arrivals[i - 1]!.total);
    }
    const seconds = last.ms / 1000;
    t.diagnostic(`${what}: ${seconds.toFixed(2)} s, ${arrivals.length} steps, first at ${first.ms.toFixed(0)} ms, largest ${step} bytes, longest gap ${gap.toFixed(0)} ms`);
    assert.equal(last.total, SMALL, `${what}: all of it`);
    assert.ok(seconds >= EXPECTED * 0.8 && seconds <= EXPECTED * 1.2, `${what} took ${seconds.toFixed(2)} s, not about ${EXPECTED.toFixed(2)}`);
    assert.ok(first.ms < 1500, `${what}: the first bytes came after ${first.ms.toFixed(0)} ms`);
    assert.ok(arrivals.length >= 10, `${what}: in ${arrivals.length} steps`);
    assert.ok(step <= SMALL / 8, `${what}: ${step} bytes at once`);
    assert.ok(gap <= 1200, `${what}: nothing for ${gap.toFixed(0)} ms`);
  }

  it('a 40 KiB file takes about 5 s each way, its bytes flowing in small steps from the start', async (t) => {
    const home = srv.home('trickle');
    const [ftpDown, ftpsDown, sftpDown, ftpUp, sftpUp] = await Promise.all([
      ftpGet(false, '/ftp.bin'),
      ftpGet(true, '/ftps.bin'),
      sftpGet('/sftp.bin'),
      ftpPut(join(home, 'ftp-in'), '/ftp-in/up.bin'),
      sftpPut(join(home, 'sftp-in'), '/sftp-in/up.bin'),
    ]);
    assertSteady('FTP download', ftpDown, t);
    assertSteady('FTPS download', ftpsDown, t);
    assertSteady('SFTP download', sftpDown, t);
    assert.deepEqual(readFileSync(join(local, 'sftp-back.bin')), data);
    for (const [what, up, name] of [['FTP upload', ftpUp, 'ftp-in'], ['SFTP upload', sftpUp, 'sftp-in']] as const) {
      // The client's own end (226, or the last WRITE's answer) comes with the last bytes, not before them.
      t.diagnostic(`${what}: the client done after ${up.seconds.toFixed(2)} s`);
      assert.ok(up.seconds >= EXPECTED * 0.8 && up.seconds <= EXPECTED * 1.2, `${what}: the client was done after ${up.seconds.toFixed(2)} s`);
      assertSteady(what, up.arrivals, t);
      assert.deepEqual(readFileSync(join(home, name, 'up.bin')), data);
    }
  });
});
