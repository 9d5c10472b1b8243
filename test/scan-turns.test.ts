import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { Client as FtpClient } from 'basic-ftp';
import { SCANS_PER_USER } from '../src/session/scanning.js';
import { Turns } from '../src/session/turns.js';
import { SlowClamd } from './helpers/clamd.js';
import { anonymousUpload } from './helpers/ftp-raw.js';
import { jsonLinesIn, netnsMissing, netnsRunner } from './helpers/netns.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';
import { until } from './helpers/stall.js';

const UPLOADS_PY = fileURLToPath(new URL('./fixtures/ftp_anonymous_uploads.py', import.meta.url));

/** A server scanning with `clamd` (scanTimeout 4 s) that takes anonymous uploads into `root`/incoming. */
const anonymousScanning = (clamd: SlowClamd, root: string): string =>
  `uploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 4\n` +
  `ftp:\n  tls: optional\n  anonymous:\n    enabled: true\n    root: ${root}\n    incoming: /incoming\n    maxSessions: 20\n    maxSessionsPerIp: 10\n`;

/*
 * clamd scans a few files at once (its MaxThreads) and queues the rest. Found
 * by an adversarial review: one user's many uploads at once (files slow to
 * scan, archives clamd unpacks) took every place at the scanner, and another
 * user's upload waited behind them past uploads.scanTimeout and was refused.
 * A user's scans now take turns: at most a few at the scanner at once, the
 * rest waiting in the server, against their own scanTimeout.
 */
describe("one user's uploads do not keep another's from the scanner", () => {
  // One scan at a time, 700 ms each: eight of alice's take 5.6 s, past the 4 s scanTimeout.
  const clamd = new SlowClamd(700, 1);
  let srv: TestServer;
  before(async () => {
    await clamd.start();
    srv = await TestServer.start({
      yaml: `uploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 4\n`,
      users: [
        { name: 'alice', password: 'alice password' },
        { name: 'bob', password: 'bob password' },
      ],
    });
  });
  after(async () => {
    await srv?.stop();
    await clamd.cleanup();
  });

  it("bob's upload is scanned in time while alice has eight waiting", { timeout: 60_000 }, async () => {
    const alice = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    const bob = await sshConnect({ port: srv.sftpPort, username: 'bob', password: 'bob password' });
    try {
      const [aliceSftp, bobSftp] = await Promise.all([sftpOf(alice), sftpOf(bob)]);
      const flood = Array.from({ length: 8 }, (_, i) => call((cb) => aliceSftp.writeFile(`/a${i}.txt`, `alice ${i}\n`, cb)).then(() => 'ok', (err: Error) => err.message));
      // bob comes once alice's first uploads have reached the scanner.
      for (let i = 0; i < 100 && clamd.streams < 2; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(clamd.streams >= 2, 'alice reached the scanner');
      await call((cb) => bobSftp.writeFile('/b.txt', 'bob\n', cb));
      await Promise.all(flood);
    } finally {
      alice.end();
      bob.end();
    }
    const record = (await srv.audit(0)).find((r) => r.event === 'upload' && r.user === 'bob');
    assert.equal(record?.result, 'ok', JSON.stringify(record));
    assert.equal(record?.scan, 'clean');
  });
});

// Anonymous clients share one stored name: found by a review, one address's uploads took that name's turns,
// and every other anonymous client's waited behind them.
describe("one anonymous client's uploads do not keep another's from the scanner", () => {
  const clamd = new SlowClamd(700, 1);
  let srv: TestServer;
  let root: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'sluice-anon-scan-'));
    mkdirSync(join(root, 'incoming'));
    await clamd.start();
    srv = await TestServer.start({ yaml: anonymousScanning(clamd, root) });
  });
  after(async () => {
    await srv?.stop();
    await clamd.cleanup();
    rmSync(root, { recursive: true, force: true });
  });

  it('an upload from another address is scanned in time while one address has eight waiting', { timeout: 60_000 }, async () => {
    const flood = Array.from({ length: 8 }, (_, i) => anonymousUpload(srv.ftpPort, '127.0.0.2', `a${i}.txt`, `flood ${i}\n`));
    for (let i = 0; i < 100 && clamd.streams < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(clamd.streams >= 2, 'the flood reached the scanner');
    assert.match(await anonymousUpload(srv.ftpPort, '127.0.0.3', 'other.txt', 'other\n'), /^226/);
    await Promise.all(flood);
    const record = (await srv.audit(0)).find((r) => r.event === 'upload' && r.ip === '127.0.0.3');
    assert.equal(record?.result, 'ok', JSON.stringify(record));
    assert.equal(record?.scan, 'clean');
  });
});

/*
 * Found by a review: anonymous clients took turns per address, where every other per-client limit
 * (connections, bans, the defender) counts an IPv6 network of limits.ipv6Prefix bits as one source. One
 * host holds a whole /64: it took two turns per address it used, and every place at the scanner. Its
 * clients use four addresses of 2001:db8::/64, the other client 2001:db8:1::/64, in a network namespace
 * of the test's own (test/helpers/netns.ts).
 */
describe("one IPv6 network's anonymous uploads do not keep another's from the scanner", () => {
  const clamd = new SlowClamd(700, 1);
  let srv: TestServer | undefined;
  let root = '';
  let missing: string | null = null;
  before(async () => {
    missing = netnsMissing();
    if (missing) return;
    root = mkdtempSync(join(tmpdir(), 'sluice-anon-scan6-'));
    mkdirSync(join(root, 'incoming'));
    await clamd.start();
    srv = await TestServer.start({
      yaml: anonymousScanning(clamd, root),
      env: { SLUICE_BIND: '2001:db8::1' },
      runner: netnsRunner(['2001:db8::1/64', '2001:db8::2/64', '2001:db8::3/64', '2001:db8::4/64', '2001:db8::5/64', '2001:db8:1::1/64']),
    });
  });
  after(async () => {
    await srv?.stop();
    await clamd.cleanup();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('an upload from another network is scanned in time while four addresses of one have eight waiting', { timeout: 60_000 }, async (t) => {
    const pid = srv?.pid;
    if (!srv || pid === undefined) return t.skip(missing ?? 'no server');
    const port = String(srv.ftpPort);
    /** Uploads to /incoming, each [from, name], by ftplib in the server's namespace. */
    const uploads = (list: [string, string][]) =>
      jsonLinesIn(pid, 'python3', [UPLOADS_PY, '2001:db8::1', port, JSON.stringify(list.map(([from, name]) => [from, `/incoming/${name}`, `${name}\n`]))]);
    const flood = uploads(Array.from({ length: 8 }, (_, i) => [`2001:db8::${2 + (i % 4)}`, `a${i}.txt`]));
    try {
      // Every flood upload sent whole and the first at the scanner: by address, all eight would be there now.
      await until('the flood sent and at the scanner', () => flood.lines.filter((l) => l.sent).length === 8 && clamd.streams >= 2);
      const other = await uploads([['2001:db8:1::1', 'other.txt']]).done;
      assert.match(String(other.find((l) => 'reply' in l)?.reply), /^226/);
      await flood.done;
    } finally {
      flood.stop();
    }
    const others = (r: Record<string, unknown>) => r.event === 'upload' && r.ip === '2001:db8:1::1';
    const record = (await srv.auditUntil(others)).find(others);
    assert.equal(record?.result, 'ok', JSON.stringify(record));
    assert.equal(record?.scan, 'clean');
  });
});

/*
 * Issue #14: the turns were kept per process, so with workers a user's uploads on two workers had
 * SCANS_PER_USER at the scanner on each, twice the share another user's waited behind. The turns are
 * the coordinator's now (the primary's with workers): the same on workers: 1 and 2.
 */
for (const workers of [1, 2]) {
  describe(`workers: ${workers} — a user's turns at the scanner hold across the server`, () => {
    // Every stream answered a second after it came, however many: the peak is what the server let through.
    const clamd = new SlowClamd(1000);
    let srv: TestServer;
    before(async () => {
      await clamd.start();
      srv = await TestServer.start({
        yaml: `ftp:\n  tls: optional\nuploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 20\n`,
        users: [{ name: 'alice', password: 'alice password' }],
        env: { SLUICE_WORKERS: String(workers) },
      });
    });
    after(async () => {
      await srv?.stop();
      await clamd.cleanup();
    });

    it("at most SCANS_PER_USER of alice's six uploads on six connections are at the scanner at once", { timeout: 60_000 }, async () => {
      const clients = Array.from({ length: 6 }, () => new FtpClient(30_000));
      try {
        await Promise.all(clients.map((c) => c.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'alice', password: 'alice password' })));
        // Node's cluster module hands connections to the workers in turn: alice's six are on both.
        const logins = () => srv.log.split('\n').filter((l) => l.includes('"msg":"login"')).map((l) => (JSON.parse(l) as { pid: number }).pid);
        await until('six login lines', () => logins().length >= 6);
        assert.equal(new Set(logins()).size, workers, `logins came from ${logins().join(', ')}`);
        await Promise.all(clients.map((c, i) => c.uploadFrom(Readable.from([`alice ${i}\n`]), `a${i}.txt`)));
      } finally {
        for (const c of clients) c.close();
      }
      assert.equal(clamd.streams, 6);
      assert.equal(clamd.peak, SCANS_PER_USER);
    });
  });
}

describe('Turns', () => {
  it('lets SCANS_PER_USER of a user through, the next when one ends; a wait given up takes no turn; other users pass', { timeout: 5000 }, async () => {
    const turns = new Turns(SCANS_PER_USER);
    const never = new AbortController().signal;
    const first = await Promise.all(Array.from({ length: SCANS_PER_USER }, () => turns.take('alice', never)));
    const givenUp = new AbortController();
    const abandoned = turns.take('alice', givenUp.signal);
    let nextCame = false;
    const next = turns.take('alice', never).then((release) => ((nextCame = true), release));
    (await turns.take('bob', never))();
    givenUp.abort(new Error('deadline'));
    await assert.rejects(abandoned, /deadline/);
    await new Promise((r) => setImmediate(r));
    assert.equal(nextCame, false, 'all of alice\'s turns are taken');
    first[0]?.();
    (await next)();
    for (const release of first.slice(1)) release();
    // Every turn given back: alice takes SCANS_PER_USER again at once.
    await Promise.all(Array.from({ length: SCANS_PER_USER }, () => turns.take('alice', never)));
    // A wait given up before it is asked for is refused as one given up later: a rejection, never a throw.
    const gone = AbortSignal.abort(new Error('gone already'));
    await assert.rejects(turns.take('carol', gone).catch((err: Error) => Promise.reject(new Error(`caught: ${err.message}`))), /caught: gone already/);
  });
});
