import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { freshRoot, openAuditLog, recordsOf } from './helpers/audit-files.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-keep-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const actor = { session: 's1', user: 'alice', protocol: 'ftp' as const, ip: '127.0.0.1', port: 1 };

const fresh = (name: string) => freshRoot(dir, name);
const openLog = openAuditLog;

const rotatedOf = (data: string, base: string) =>
  readdirSync(data)
    .filter((n) => n.startsWith(base + '.') && /^\d+$/.test(n.slice(base.length + 1)))
    .sort((a, b) => Number(b.slice(base.length + 1)) - Number(a.slice(base.length + 1)));

describe('audit.keep while rotations keep coming', () => {
  it('bursts of records rotating every few bursts: retention deletes only whole files beyond the count and the chain verifies', async () => {
    const { root, data, file } = fresh('bursts');
    const { log, errors } = await openLog(file, { rotateSize: 16 * 1024, keep: { count: 3, days: 0 } });
    for (let burst = 0; burst < 100; burst++) {
      for (let i = 0; i < 40; i++) log.record(actor, { event: 'rename', from: `/in/${burst}/${i}.part`, to: `/in/${burst}/${i}.dat` });
      await new Promise((r) => setTimeout(r, 5));
    }
    await log.close();
    assert.deepEqual(errors, []);
    const kept = rotatedOf(data, 'audit.log');
    const records = [...kept, 'audit.log'].flatMap((n) => recordsOf(join(data, n)));
    assert.deepEqual(records.filter((r) => r.event === 'audit-keep-refused'), [], 'no refusal');
    assert.equal(kept.length, 3, `keep.count rotated files remain: ${kept.join(' ')}`);
    const deleted = records.filter((r) => r.event === 'audit-deleted');
    assert.ok(deleted.length >= 3, `deletions: ${deleted.length}`);
    // The oldest file kept begins right after the last deletion's last line.
    assert.equal(recordsOf(join(data, kept[0] as string))[0]?.seq, Math.max(...deleted.map((r) => r.last_seq as number)) + 1);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});

describe('audit.keep for the xferlog', () => {
  it('its rotated files beyond the count are deleted too, each deletion recorded in the audit trail', async () => {
    const { root, data, file } = fresh('xferlog');
    const xferlog = join(data, 'xferlog');
    const options = { rotateSize: 8 * 1024, keep: { count: 2, days: 0 }, xferlog };
    // A long path makes an xferlog line more than half an audit record, so the xferlog rotates (and one of its
    // files is deleted) at least once in what the audit keeps (two rotated files and the live one): with short
    // paths the audit turned over its files faster than that and kept no deletion record some runs.
    const dirs = 'd'.repeat(1000);
    const upload = (n: number) => ({
      event: 'upload' as const, path: `/in/${dirs}/file-${n}.dat`, bytes: n, size: n, offset: 0, resumed: false,
      started: new Date().toISOString(), duration_ms: 3, result: 'ok' as const, sha256: null, type: 'binary' as const,
    });
    const { log, errors } = await openLog(file, options);
    for (let burst = 0; burst < 25; burst++) {
      for (let i = 0; i < 20; i++) log.record(actor, upload(burst * 20 + i));
      // Each burst's rotations done before the next: while one is under way the records go on into the file it
      // leaves, and a loaded CI run, its 5 ms pauses all taken by one slow rotation, kept one audit file, not two.
      await log.flush();
    }
    await log.close();
    assert.deepEqual(errors, []);
    const audits = rotatedOf(data, 'audit.log');
    const xferlogs = rotatedOf(data, 'xferlog');
    assert.equal(audits.length, 2, `audit files: ${audits.join(' ')}`);
    assert.equal(xferlogs.length, 2, `xferlog files beyond keep.count remain: ${xferlogs.join(' ')}`);
    const records = [...audits, 'audit.log'].flatMap((n) => recordsOf(join(data, n)));
    const deleted = records.filter((r) => r.event === 'xferlog-deleted');
    assert.ok(deleted.length >= 1, 'each deletion is recorded');
    assert.ok(deleted.every((r) => r.reason === 'count' && /^xferlog\.\d+$/.test(String(r.file))));
    // The xferlog lines kept are the newest ones, in order, up to the last upload.
    // The live file is empty when the last line filled the one before it (a split of '' is one empty line).
    const lines = [...xferlogs, 'xferlog'].flatMap((n) => readFileSync(join(data, n), 'utf8').split('\n').filter((l) => l !== ''));
    const numbers = lines.map((l) => Number(/file-(\d+)\.dat/.exec(l)?.[1]));
    assert.deepEqual(numbers, numbers.map((_, i) => 499 - (numbers.length - 1) + i));

    // At start as well: a larger backlog left with keep off goes down to the count.
    const off = await openLog(file, { ...options, keep: { count: 0, days: 0 } });
    for (let i = 0; i < 300; i++) off.log.record(actor, upload(i));
    await off.log.close();
    assert.ok(rotatedOf(data, 'xferlog').length > 2);
    const again = await openLog(file, options);
    await again.log.close();
    assert.deepEqual([...off.errors, ...again.errors], []);
    assert.equal(rotatedOf(data, 'xferlog').length, 2);
    const r = sluice(root, ['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
