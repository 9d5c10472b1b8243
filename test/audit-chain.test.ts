import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GENESIS, chainLine, verifyLines, type ChainHead } from '../src/audit/chain.js';
import { AuditLog } from '../src/audit/log.js';
import { sluice } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

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
      const log = new AuditLog(file);
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
