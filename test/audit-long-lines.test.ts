import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { AuditLog } from '../src/audit/log.js';
import { LastLine, lastLine, lastLineOf, linesFromEnd } from '../src/audit/file-end.js';
import { logFileLines, type LogLine } from '../src/audit/file-lines.js';
import { BIN, sluice, startServe } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';
import { freshRoot, openAuditLog, type Rec } from './helpers/audit-files.js';

// A line's length is not the readers' to assume: a session's records are bounded (a copy's names
// 16 files), but an older version's, or a future record's, may not be. Every reader of a file's end
// must find its last line whole.

const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-long-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const actor = { session: 's1', user: 'alice', protocol: 'sftp' as const, ip: '127.0.0.1', port: 1 };
const MiB = 1024 * 1024;

const fresh = (name: string) => freshRoot(dir, name);
const openLog = openAuditLog;

/** An upload record of `bytes` or more, by the paths it was copied from. */
function bigUpload(bytes: number): Parameters<AuditLog['record']>[1] {
  const name = '/' + 'd'.repeat(250) + '/' + 'f'.repeat(200);
  const copied_from = Array.from({ length: Math.ceil(bytes / name.length) }, (_, i) => `${name}${i}`);
  return { event: 'upload', path: '/joined', bytes: 1, size: 1, offset: 0, resumed: false, started: new Date().toISOString(), duration_ms: 1, result: 'ok', sha256: null, type: 'binary', copied_from };
}

const recordsOf = (f: string): Rec[] =>
  readFileSync(f, 'utf8').split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l) as Rec];
    } catch {
      return [];
    }
  });
const rotatedIn = (data: string) =>
  readdirSync(data).filter((n) => /^audit\.log\.\d+$/.test(n)).sort((a, b) => Number(b.slice(10)) - Number(a.slice(10)));

describe('audit lines longer than a MiB', () => {
  it('the readers of a file\'s end give its last complete line whole and what follows, at any chunk boundary', async () => {
    const K = 64 * 1024;
    /** The expected answer, the slow way: from just after the newline before the last complete line. */
    const expected = (b: Buffer) => {
      const end = b.lastIndexOf(0x0a);
      return end <= 0 ? b : b.subarray(b.lastIndexOf(0x0a, end - 1) + 1);
    };
    const cases: Buffer[] = [Buffer.alloc(0), Buffer.from('\n'), Buffer.from('\n\n'), Buffer.from('a'), Buffer.from('a\n'), Buffer.from('a\nb'), Buffer.from('a\nb\n')];
    for (const line of [K - 1, K, K + 1, 3 * K + 5]) {
      for (const fragment of [0, 1, K - 1, K, 2 * K + 3]) {
        cases.push(Buffer.concat([Buffer.from('x'.repeat(100) + '\n'), Buffer.alloc(line, 0x6c), Buffer.from('\n'), Buffer.alloc(fragment, 0x66)]));
        cases.push(Buffer.concat([Buffer.alloc(line, 0x6c), Buffer.from('\n'), Buffer.alloc(fragment, 0x66)]));
      }
    }
    const f = join(dir, 'ends');
    for (const [i, c] of cases.entries()) {
      writeFileSync(f, c);
      const want = expected(c);
      const fh = await open(f, 'r');
      try {
        assert.ok((await lastLine(fh, f)).equals(want), `async, case ${i}`);
      } finally {
        await fh.close();
      }
      for (const piece of [1, 7, K]) {
        const end = new LastLine();
        for (let at = 0; at < c.length; at += piece) end.push(c.subarray(at, at + piece));
        assert.ok(end.text.equals(want), `stream in pieces of ${piece}, case ${i}`);
      }
    }
  });

  it('read back from the end, a file gives the lines it gives forwards, in reverse, at any chunk boundary', async () => {
    const K = 64 * 1024;
    const cases: Buffer[] = [Buffer.alloc(0), Buffer.from('\n'), Buffer.from('\n\n'), Buffer.from('a'), Buffer.from('a\n'), Buffer.from('\na'), Buffer.from('a\n\nb\n')];
    for (const line of [K - 1, K, K + 1, 3 * K + 5]) {
      for (const tail of [0, 1, K - 1, K, 2 * K + 3]) {
        cases.push(Buffer.concat([Buffer.alloc(line, 0x6c), Buffer.from('\n\n'), Buffer.from('r'.repeat(90) + '\n'), Buffer.alloc(tail, 0x66)]));
        cases.push(Buffer.concat([Buffer.from('\n'), Buffer.alloc(tail, 0x66), Buffer.from('\n'), Buffer.alloc(line, 0x6c), Buffer.from('\n')]));
      }
    }
    const f = join(dir, 'backwards');
    for (const [i, c] of cases.entries()) {
      writeFileSync(f, c);
      const forwards: LogLine[] = [];
      for await (const lines of logFileLines({ path: f, gz: false })) forwards.push(...lines);
      const fh = await open(f, 'r');
      try {
        const backwards: LogLine[] = [];
        for await (const line of linesFromEnd(fh, f)) backwards.push(line);
        assert.deepEqual(backwards.reverse().map(String), forwards.map(String), `case ${i}`);
      } finally {
        await fh.close();
      }
      // The last record is the last line the test takes, however far back: here the last line starting with 'r' or 'l'.
      const takes = (l: LogLine) => l instanceof Buffer && (l[0] === 0x72 || l[0] === 0x6c);
      assert.equal(String(await lastLineOf({ path: f, gz: false }, takes)), String(forwards.filter(takes).at(-1) ?? null), `lastLineOf, case ${i}`);
    }
  });

  it('a restart continues the chain from a last line of 3 MiB, in the live file and in the rotated one', async () => {
    const { root, file } = fresh('restart');
    const first = await openLog(file);
    first.log.record(actor, { event: 'mkdir', path: '/a' });
    first.log.record(actor, bigUpload(3 * MiB));
    await first.log.close();
    const big = recordsOf(file).at(-1);
    assert.equal(big?.event, 'upload');
    assert.ok(readFileSync(file, 'utf8').trimEnd().split('\n').at(-1)!.length > 3 * MiB);

    const second = await openLog(file);
    await second.log.close();
    assert.deepEqual(second.errors, []);
    const anchor = recordsOf(file).at(-1);
    assert.equal(anchor?.event, 'audit-start');
    assert.equal(anchor?.seq, big.seq + 1, 'the chain goes on after the long line, not from 0');

    // logrotate moved the file away and the new one is not there yet: the rotated file's long last line.
    const { log } = await openLog(file);
    log.record(actor, bigUpload(2 * MiB));
    await log.close();
    const last = recordsOf(file).at(-1) as Rec;
    renameSync(file, file + '.1');
    const third = await openLog(file);
    await third.log.close();
    assert.equal(recordsOf(file)[0]?.seq, last.seq + 1);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('a crash that tears a line of 3 MiB: the restart records the whole fragment and verify accepts it', async () => {
    const { root, file } = fresh('torn');
    const { log } = await openLog(file);
    log.record(actor, { event: 'mkdir', path: '/a' });
    log.record(actor, bigUpload(3 * MiB));
    await log.close();
    const before = recordsOf(file);
    const size = readFileSync(file).length;
    truncateSync(file, size - 100);
    const fragment = readFileSync(file).subarray(readFileSync(file).lastIndexOf(0x0a) + 1);
    assert.ok(fragment.length > 3 * MiB);

    const again = await openLog(file);
    await again.log.close();
    const anchor = recordsOf(file).at(-1) as Rec & { torn?: { bytes: number } };
    assert.equal(anchor.event, 'audit-start');
    assert.equal(anchor.seq, (before.at(-2) as Rec).seq + 1, 'the chain goes on from the last whole line');
    assert.equal(anchor.torn?.bytes, fragment.length, 'the whole fragment is recorded');
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /torn by a crash and recorded at restart/);
  });

  it('retention deletes a rotated file whose last line is 3 MiB once it chains into the next', async () => {
    const { root, data, file } = fresh('keep');
    // Runs apart, so that retention at the third start meets no rotation under way.
    const first = await openLog(file, { rotateSize: 4096 });
    for (let i = 0; i < 10; i++) first.log.record(actor, { event: 'mkdir', path: `/before${i}` });
    // The long line fills the file: it is the last line of the file rotated now.
    first.log.record(actor, bigUpload(3 * MiB));
    await first.log.close();
    const big = recordsOf(file + '.1').at(-1) as Rec;
    assert.equal(big.event, 'upload');
    const second = await openLog(file, { rotateSize: 4096 });
    for (let i = 0; i < 30; i++) second.log.record(actor, { event: 'mkdir', path: `/after${i}` });
    await second.log.close();
    assert.deepEqual(rotatedIn(data), ['audit.log.2', 'audit.log.1']);
    assert.equal((recordsOf(join(data, 'audit.log.2')).at(-1) as Rec).seq, big.seq);

    const third = await openLog(file, { rotateSize: 4096, keep: { count: 1, days: 0 } });
    await third.log.close();
    assert.deepEqual([...first.errors, ...second.errors, ...third.errors], []);
    const all = [...rotatedIn(data), 'audit.log'].flatMap((n) => recordsOf(join(data, n)));
    assert.deepEqual(all.filter((r) => r.event === 'audit-keep-refused'), [], 'no refusal');
    assert.deepEqual(
      all.filter((r) => r.event === 'audit-deleted').map((r) => [r.file, r.last_seq]),
      [['audit.log.2', big.seq]],
    );
    assert.deepEqual(rotatedIn(data), ['audit.log.1']);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('a file whose last complete line is not a record stops the start rather than start a chain verify rejects', async () => {
    for (const [name, content] of [
      ['garbage-only', 'x'.repeat(2 * MiB) + '\n'],
      ['garbage-last', null],
    ] as const) {
      const { file } = fresh(name);
      if (content !== null) writeFileSync(file, content);
      else {
        const { log } = await openLog(file);
        log.record(actor, { event: 'mkdir', path: '/a' });
        await log.close();
        appendFileSync(file, '{"not":"a record"}\n');
      }
      const before = readFileSync(file);
      await assert.rejects(openLog(file), /audit\.log: its last complete line is not an audit record/, name);
      assert.deepEqual(readFileSync(file), before, 'nothing written');
    }
  });
});

// Records are bounded (MAX_RECORD_BYTES): a line longer, corrupted or planted, is damage the readers name
// at its line, holding no more of it than a record's length. A line of 2.5 GB made `audit verify` take some 5 GB.
describe('a line longer than any record', () => {
  const rssProbe = join(dir, 'peak-rss.cjs');
  /** `sluice audit ...` in `cwd`, its exit, output and peak RSS in MiB. */
  const audit = (cwd: string, args: string[]) => {
    writeFileSync(rssProbe, "process.on('exit', () => process.stderr.write(`peak-rss ${process.resourceUsage().maxRSS}\\n`));\n");
    const r = spawnSync(process.execPath, ['--require', rssProbe, BIN, 'audit', ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
    const peak = /peak-rss (\d+)\n$/.exec(r.stderr)?.[1];
    return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/peak-rss \d+\n$/, ''), rssMiB: Number(peak) / 1024 };
  };

  it('verify breaks the chain at its line, query and report skip it saying so, each in bounded memory', async () => {
    const { root, file } = fresh('planted');
    const { log } = await openLog(file);
    log.record(actor, { event: 'mkdir', path: '/a' });
    await log.close();
    // 64 MiB in one line, then records after it: held whole, the line took four times its size (some 260 MiB peak).
    const big = Buffer.alloc(64 * MiB, 0x78);
    appendFileSync(file, big);
    appendFileSync(file, '\n{"seq":3}\n');
    // The same line gzipped: 64 KiB that gunzip to it, a rotated file's (a few MiB would give gigabytes).
    const gz = join(root, 'bomb.gz');
    writeFileSync(gz, gzipSync(big, { level: 9 }));
    const verify = audit(root, ['verify']);
    const query = audit(root, ['query', '--json']);
    const bomb = audit(root, ['verify', gz]);
    for (const [what, r] of [['verify', verify], ['query', query], ['verify of a .gz', bomb]] as const) {
      assert.ok(r.rssMiB < 160, `${what}: peak RSS ${r.rssMiB.toFixed(1)} MiB for a line of 64 MiB`);
    }
    assert.equal(verify.code, 1, verify.stderr);
    assert.equal(verify.stdout, `node n1: ${file}:3: a line of ${64 * MiB} bytes, longer than any audit record (${8 * MiB} bytes at most): corrupted or altered\n`);
    assert.equal(query.code, 0, query.stderr);
    // The records before and after it (the one after has no time: it sorts first).
    assert.deepEqual(query.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Rec).seq), [3, 0, 1]);
    assert.equal(query.stderr, `sluice: ${file}:3: a line of ${64 * MiB} bytes, longer than any audit record (${8 * MiB} bytes at most): corrupted or altered; skipped\n`);
    assert.equal(bomb.code, 1, bomb.stderr);
    assert.ok(bomb.stdout.startsWith(`${gz} (no node id): ${gz}:1: a line of ${64 * MiB} bytes, longer than any audit record`), bomb.stdout);
  });

  it('the writer writes none: a record that would be longer is recorded as too long, and the chain verifies', async () => {
    const { root, file } = fresh('too-long');
    const { log, errors } = await openLog(file);
    log.record(actor, bigUpload(9 * MiB));
    await log.close();
    const last = recordsOf(file).at(-1) as Rec & { record_event?: string; bytes?: number };
    assert.deepEqual([last.event, last.record_event, last.user], ['audit-record-too-long', 'upload', 'alice']);
    assert.ok((last.bytes ?? 0) > 9 * MiB);
    assert.match(errors.join('\n'), /a record \(upload\) of \d+ bytes is longer than any record may be/);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('a start whose last line, or what follows it, is longer stops, saying so, without reading it whole', async () => {
    for (const [name, tail, pattern] of [
      ['long-last', '\n', /its last complete line is over 8388608 bytes, longer than any audit record/],
      ['long-fragment', '', /the 8388608 bytes or more after its last newline are longer than any audit record/],
    ] as const) {
      const { file } = fresh(name);
      const { log } = await openLog(file);
      log.record(actor, { event: 'mkdir', path: '/a' });
      await log.close();
      appendFileSync(file, Buffer.alloc(9 * MiB, 0x78));
      appendFileSync(file, tail);
      const before = readFileSync(file).length;
      await assert.rejects(openLog(file), pattern, name);
      assert.equal(readFileSync(file).length, before, 'nothing written');
    }
  });
});

describe('a server restart after a kill', () => {
  // Records of a MiB can no longer be made through a session (a copy's record names 16 files, sftp-protocol):
  // the readers above take any length; here the server's own start, after a kill, and after a line that is no record.
  it('continues the chain from the last line, and verify passes; a last line that is no record stops the start', async () => {
    const srv = await TestServer.start({ users: [{ name: 'ola', password: 'ola password', args: ['--perms', 'all'] }] });
    try {
      const file = join(srv.dir, 'data', 'audit.log');
      const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
      try {
        const lastOf = () => JSON.parse(readFileSync(file, 'utf8').trimEnd().split('\n').at(-1) as string) as Rec;
        const until = Date.now() + 10_000;
        while (lastOf().event !== 'login' && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
        const login = lastOf();
        assert.equal(login.event, 'login');
        await srv.kill();

        await srv.restart();
        await srv.terminate();
        const records = recordsOf(file);
        const restart = records[records.findIndex((r) => r.event === 'login' && r.seq === login.seq) + 1];
        assert.equal(restart?.event, 'audit-start');
        assert.equal(restart.seq, login.seq + 1, 'the restart continues the chain after the last line');
        const r = sluice(srv.dir, ['audit', 'verify']);
        assert.equal(r.code, 0, r.stdout + r.stderr);
      } finally {
        conn.end();
      }

      appendFileSync(file, 'not a record\n');
      const refused = startServe(srv.dir, { SLUICE_BIND: '127.0.0.1', SLUICE_FTP_PORT: String(srv.ftpPort), SLUICE_FTPS_PORT: String(srv.ftpsPort), SLUICE_SFTP_PORT: String(srv.sftpPort) }, /sluice started/);
      const [code] = (await once(refused.child, 'exit')) as [number | null];
      await refused.ready.catch(() => undefined);
      assert.notEqual(code, 0);
      assert.match(refused.output().stdout + refused.output().stderr, /its last complete line is not an audit record/);
    } finally {
      await srv.stop();
    }
  });
});
