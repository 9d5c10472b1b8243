import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GENESIS, chainLine, verifyLines, type ChainHead } from '../src/audit/chain.js';
import { AuditLog, type AuditLogOptions } from '../src/audit/log.js';
import { sluice } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const failOnError = (err: Error) => assert.fail(`audit log error: ${err.message}`);
function openLog(file: string, options: Partial<AuditLogOptions> = {}): AuditLog {
  return new AuditLog({ file, rotateSize: 0, xferlog: null, onError: failOnError, ...options });
}
const linesOf = (f: string) => readFileSync(f, 'utf8').trim().split('\n');
const recordsOf = (f: string) => linesOf(f).map((l) => JSON.parse(l) as { seq: number; event: string; reason?: string });

function chain(n: number): string[] {
  let head: ChainHead = { seq: 0, prev: GENESIS };
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = chainLine(head, { event: 'upload', path: `/f${i}`, bytes: i });
    lines.push(r.line);
    head = r.head;
  }
  return lines;
}

describe('audit hash chain (pure)', () => {
  it('an untouched chain verifies', () => {
    assert.equal(verifyLines(chain(10)).break, null);
  });
  it('an edited byte names the edited line', () => {
    const lines = chain(10);
    lines[4] = (lines[4] as string).replace('"bytes":4', '"bytes":5');
    assert.deepEqual(verifyLines(lines).break?.line, 5);
  });
  it('a deleted line names the line where the gap shows', () => {
    const lines = chain(10);
    lines.splice(3, 1);
    const b = verifyLines(lines).break;
    assert.equal(b?.line, 4);
    assert.match(b?.reason ?? '', /removed/);
  });
  it('two swapped lines are found', () => {
    const lines = chain(10);
    [lines[5], lines[6]] = [lines[6] as string, lines[5] as string];
    assert.equal(verifyLines(lines).break?.line, 6);
  });
  it('an inserted line is found', () => {
    const lines = chain(10);
    lines.splice(2, 0, lines[1] as string);
    assert.equal(verifyLines(lines).break?.line, 3);
  });
  it('a truncated last line is reported by its number', () => {
    const lines = chain(10);
    lines[9] = (lines[9] as string).slice(0, 20);
    const b = verifyLines(lines).break;
    assert.equal(b?.line, 10);
    assert.match(b?.reason ?? '', /truncated/);
  });
});

describe('audit log file and sluice audit verify', () => {
  const file = join(dir, 'audit.log');
  const actor = { session: 's1', user: 'alice', protocol: 'sftp' as const, ip: '127.0.0.1', port: 1 };
  const verify = (f = file) => sluice(dir, ['audit', 'verify', f]);

  it('writes chained lines, continues the chain across restarts, and verifies', async () => {
    for (let run = 0; run < 2; run++) {
      const log = openLog(file);
      for (let i = 0; i < 5; i++) log.record(actor, { event: 'mkdir', path: `/run${run}/d${i}` });
      await log.close();
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, 12, 'two anchors and ten events');
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { seq: number }).seq), [...Array(12).keys()]);
    assert.equal((JSON.parse(lines[6] as string) as { event: string }).event, 'audit-start');
    const r = verify();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ok: 12 lines, chain intact/);
  });

  const tampered: [string, (lines: string[]) => string[], number][] = [
    ['an edited byte', (l) => l.map((x, i) => (i === 3 ? x.replace('/run0/d2', '/run0/dX') : x)), 4],
    ['a deleted line', (l) => l.filter((_, i) => i !== 5), 6],
    ['two swapped lines', (l) => l.map((x, i) => (i === 7 ? (l[8] as string) : i === 8 ? (l[7] as string) : x)), 8],
    ['a truncation', (l) => [...l.slice(0, -1), (l.at(-1) as string).slice(0, 30)], 12],
  ];
  for (const [what, mutate, line] of tampered) {
    it(`fails after ${what}, naming line ${line}`, () => {
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      const copy = join(dir, `tampered-${line}.log`);
      writeFileSync(copy, mutate(lines).join('\n') + '\n');
      const r = verify(copy);
      assert.equal(r.code, 1);
      assert.match(r.stdout, new RegExp(`:${line}: `));
    });
  }

  it('reports an unreadable file clearly', () => {
    const r = verify(join(dir, 'missing.log'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read .*missing\.log: ENOENT/);
  });
});

describe('audit log rotation', () => {
  const actor = { session: 's1', user: 'alice', protocol: 'ftps' as const, ip: '127.0.0.1', port: 1 };
  // `sluice audit` run in `root` reads ./data/audit.log and its rotated files by default.
  const fresh = (name: string) => {
    const root = join(dir, name);
    mkdirSync(join(root, 'data'), { recursive: true });
    return { root, data: join(root, 'data'), file: join(root, 'data', 'audit.log') };
  };

  it('rotates by size into audit.log.1, .2, ..., the chain running on across the files', async () => {
    const { root, data, file } = fresh('by-size');
    const log = openLog(file, { rotateSize: 2000 });
    for (let i = 0; i < 60; i++) {
      log.record(actor, { event: 'mkdir', path: `/d${i}` });
      // Let rotations run between records, as they do between real events.
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 20));
    }
    await log.close();
    const rotated = readdirSync(data).filter((n) => /^audit\.log\.\d+$/.test(n)).sort((a, b) => Number(b.slice(10)) - Number(a.slice(10)));
    assert.ok(rotated.length >= 3, `several rotations, got ${rotated.join(' ')}`);
    const files = [...rotated.map((n) => join(data, n)), file];
    const records = files.flatMap(recordsOf);
    assert.deepEqual(records.map((r) => r.seq), [...records.keys()], 'one gapless sequence, oldest file first');
    assert.equal(records.filter((r) => r.event === 'mkdir').length, 60, 'no record lost');
    for (const f of files.slice(1)) {
      const first = recordsOf(f)[0];
      assert.equal(first?.event, 'audit-rotated', `${f} starts with the anchor`);
      assert.equal(first?.reason, 'size');
    }
    const ok = sluice(root, ['audit', 'verify']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, new RegExp(`ok: ${records.length} lines`));

    // An auditor's questions still answer when logrotate has compressed the old files.
    const oldest = join(data, rotated[0] as string);
    writeFileSync(oldest + '.gz', gzipSync(readFileSync(oldest)));
    rmSync(oldest);
    assert.equal(sluice(root, ['audit', 'verify']).code, 0);
    const q = sluice(root, ['audit', 'query', '--json', '--path', '/d*']);
    assert.equal(q.stdout.trim().split('\n').length, 60);

    // A rotated file gone missing breaks the chain where the next one begins.
    rmSync(join(data, rotated[1] as string));
    const broken = sluice(root, ['audit', 'verify']);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, new RegExp(`${rotated[2] ?? 'audit\\.log'}:1: sequence jumps`));
  });

  it('after logrotate moves the file, SIGHUP (reopen) starts a new one that continues the chain', async () => {
    const { root, data, file } = fresh('reopen');
    const log = openLog(file);
    log.record(actor, { event: 'mkdir', path: '/before' });
    await log.reopen();
    await log.flush();
    assert.equal(readdirSync(data).length, 1, 'a file still in place is kept');
    renameSync(file, file + '.1');
    log.record(actor, { event: 'mkdir', path: '/in-flight' });
    await log.reopen();
    log.record(actor, { event: 'mkdir', path: '/after' });
    await log.close();
    const old = recordsOf(file + '.1');
    const now = recordsOf(file);
    assert.deepEqual(old.map((r) => r.event), ['audit-start', 'mkdir', 'mkdir'], 'lines written before the reopen stay in the moved file');
    assert.deepEqual(now.map((r) => [r.event, r.reason]), [['audit-rotated', 'reopen'], ['mkdir', undefined]]);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Out of order, the files do not chain.
    assert.equal(sluice(root, ['audit', 'verify', file, file + '.1']).code, 1);
  });

  it('a restart after the file was moved away continues the chain from the rotated file', async () => {
    const { root, file } = fresh('restart');
    const first = openLog(file);
    first.record(actor, { event: 'delete', path: '/x' });
    await first.close();
    renameSync(file, file + '.1');
    const second = openLog(file);
    second.record(actor, { event: 'delete', path: '/y' });
    await second.close();
    assert.equal(recordsOf(file)[0]?.seq, 2);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(!existsSync(file + '.2'));
  });
});
