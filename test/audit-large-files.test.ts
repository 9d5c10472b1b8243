import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { GENESIS, chainLine, type ChainHead } from '../src/audit/chain.js';
import { BIN } from './helpers/cli.js';

/**
 * The audit readers (`sluice audit verify | query | report`) read each file
 * whole: a trail file over 2 GiB (logrotate daily on a busy server,
 * rotateSize 0) could not be read at all, and a large one was held in
 * memory with every line as an object. They now stream: memory is a chunk
 * and a line, whatever the files' sizes. Measured here as the command's
 * peak RSS over a trail of 128 MiB (a gzipped rotated file and the live
 * one), which the whole-file readers held at once.
 */
const MiB = 1024 * 1024;
const HALF = 64 * MiB;
/** A bound the streaming readers stay under (99-113 MiB seen here, 172 for a 2.2 GiB file), and the whole-file ones far over (279-296 MiB). */
const RSS_LIMIT_MiB = 200;

const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-large-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const root = join(dir, 'node');
const data = join(root, 'data');
// Prints the process's peak RSS as it exits: the figure this file is about.
const rssProbe = join(dir, 'peak-rss.cjs');
let lines = 0;

/** `sluice audit ...` in `cwd`, its exit, output and peak RSS in MiB. */
function audit(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--require', rssProbe, BIN, 'audit', ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
  const peak = /peak-rss (\d+)/.exec(r.stderr)?.[1];
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, rssMiB: peak === undefined ? NaN : Number(peak) / 1024 };
}

describe('audit readers stream large trail files', () => {
  before(async () => {
    writeFileSync(rssProbe, "process.on('exit', () => process.stderr.write(`peak-rss ${process.resourceUsage().maxRSS}\\n`));\n");
    mkdirSync(data, { recursive: true });
    let head: ChainHead = { seq: 0, prev: GENESIS };
    const padding = 'x'.repeat(900);
    const write = (file: string, first: string) => {
      const fd = openSync(file, 'w');
      let size = 0;
      let pending: string[] = [];
      for (let i = 0; size < HALF; i++) {
        const r = chainLine(head, { time: '2026-12-05T00:00:00.000Z', node: 'big', ...(i === 0 ? { event: first } : { event: 'upload', result: 'ok', bytes: 10 }), user: 'alice', path: `/f${lines}`, padding });
        head = r.head;
        pending.push(r.line);
        size += r.line.length + 1;
        lines++;
        if (pending.length === 1000) {
          writeSync(fd, pending.join('\n') + '\n');
          pending = [];
        }
      }
      if (pending.length > 0) writeSync(fd, pending.join('\n') + '\n');
      closeSync(fd);
    };
    write(join(data, 'older'), 'audit-start');
    await pipeline(createReadStream(join(data, 'older')), createGzip({ level: 1 }), createWriteStream(join(data, 'audit.log.1.gz')));
    rmSync(join(data, 'older'));
    write(join(data, 'audit.log'), 'audit-rotated');
  });

  it('verify checks the whole chain in bounded memory', (t) => {
    const r = audit(root, ['verify']);
    t.diagnostic(`verify: peak RSS ${r.rssMiB.toFixed(1)} MiB`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `node big: ok: ${lines} lines, chain intact\n`);
    assert.ok(r.rssMiB < RSS_LIMIT_MiB, `peak RSS ${r.rssMiB.toFixed(1)} MiB for ${(2 * HALF) / MiB} MiB of trail`);
  });

  it('query and report read every record in bounded memory', (t) => {
    const query = audit(root, ['query', '--json', '--path', '/f7']);
    assert.equal(query.code, 0, query.stderr);
    assert.deepEqual(query.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq), [7]);
    assert.ok(query.rssMiB < RSS_LIMIT_MiB, `query: peak RSS ${query.rssMiB.toFixed(1)} MiB`);
    const report = audit(root, ['report', '--json']);
    t.diagnostic(`query: peak RSS ${query.rssMiB.toFixed(1)} MiB, report: ${report.rssMiB.toFixed(1)} MiB`);
    assert.equal(report.code, 0, report.stderr);
    const [alice] = JSON.parse(report.stdout) as { user: string; uploads: number }[];
    assert.deepEqual([alice?.user, alice?.uploads], ['alice', lines - 2], 'every upload counted');
    assert.ok(report.rssMiB < RSS_LIMIT_MiB, `report: peak RSS ${report.rssMiB.toFixed(1)} MiB`);
  });

  it('files given by name stream too', () => {
    const r = audit(dir, ['verify', join(data, 'audit.log.1.gz'), join(data, 'audit.log')]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.rssMiB < RSS_LIMIT_MiB, `peak RSS ${r.rssMiB.toFixed(1)} MiB`);
  });

  it('a start after logrotate compressed the live file continues the chain from the .gz, read as it streams', (t) => {
    // Only the newest rotated file's last record matters to a start: 256 MiB of filler before three records.
    const moved = join(dir, 'rotated');
    mkdirSync(moved);
    const fd = openSync(join(moved, 'raw'), 'w');
    const filler = Buffer.alloc(MiB, 0x78);
    for (let i = 0; i < MiB; i += 1000) filler[i] = 0x0a;
    for (let i = 0; i < 256; i++) writeSync(fd, filler);
    let head: ChainHead = { seq: 0, prev: GENESIS };
    for (const event of ['audit-start', 'mkdir', 'mkdir']) {
      const r = chainLine(head, { time: '2026-12-05T00:00:00.000Z', node: 'n1', event });
      writeSync(fd, '\n' + r.line);
      head = r.head;
    }
    writeSync(fd, '\n');
    closeSync(fd);
    const gz = spawnSync('gzip', ['-1', join(moved, 'raw')]);
    assert.equal(gz.status, 0, String(gz.stderr));
    renameSync(join(moved, 'raw.gz'), join(moved, 'audit.log.1.gz'));
    const log = pathToFileURL(join(import.meta.dirname, '../src/audit/log.js')).href;
    const file = join(moved, 'audit.log');
    const options = { file, node: 'n1', rotateSize: 0, keep: { count: 0, days: 0 }, xferlog: null };
    const script = `import { AuditLog } from ${JSON.stringify(log)};
      const log = await AuditLog.open({ ...${JSON.stringify(options)}, onError: (e) => { console.error(e.message); process.exitCode = 1; } });
      await log.close();`;
    const r = spawnSync(process.execPath, ['--require', rssProbe, '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    const rssMiB = Number(/peak-rss (\d+)/.exec(r.stderr)?.[1]) / 1024;
    t.diagnostic(`start: peak RSS ${rssMiB.toFixed(1)} MiB`);
    assert.equal(r.status, 0, r.stderr);
    const [anchor] = readFileSync(file, 'utf8').split('\n').map((l) => (l === '' ? null : (JSON.parse(l) as { seq: number; prev: string; event: string })));
    assert.deepEqual([anchor?.event, anchor?.seq, anchor?.prev], ['audit-start', head.seq, head.prev], 'the chain goes on from the .gz\'s last record');
    assert.ok(rssMiB < RSS_LIMIT_MiB, `peak RSS ${rssMiB.toFixed(1)} MiB for a .gz of 256 MiB`);
  });

  it('makes no data or certificate directory where it is run', () => {
    const empty = join(dir, 'elsewhere');
    mkdirSync(empty);
    for (const command of [['verify'], ['query'], ['report']]) {
      const r = audit(empty, command);
      assert.equal(r.code, 2, `${command[0]}: ${r.stderr}`);
      assert.match(r.stderr, /cannot read .*data\/audit\.log: ENOENT/);
    }
    assert.deepEqual(readdirSync(empty), [], 'a command that only reads made nothing');
    assert.ok(!existsSync(join(empty, 'certs')));
  });
});
