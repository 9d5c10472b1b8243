// The quarantine's keeps take turns one at a time on the whole server (scan/quarantine.ts, the coordinator's
// keepTurns), each worker writing through a QuarantineDir of its own.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, it } from 'node:test';
import { QuarantineDir } from '../src/scan/quarantine.js';
import { Turns } from '../src/session/turns.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-keeps-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// Found by the second review of the turn queues: each keep waits on one signal that never aborts, every
// keep waiting in a process listens on it, and an eleventh made Node warn of a memory leak
// (MaxListenersExceededWarning on stderr, outside the server's log) whenever eleven were kept at once.
it('twelve keeps at once wait their turns without a warning of a leak', async () => {
  const warnings: string[] = [];
  const warned = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', warned);
  try {
    const quarantine = new QuarantineDir(join(dir, 'quarantine'), { totalBytes: 1 << 20, userBytes: 1 << 20 }, new Turns(1));
    const kept = await Promise.all(
      Array.from({ length: 12 }, (_, i) => quarantine.keep(() => Readable.from([Buffer.from(`sample ${i}`)]), { user: 'alice', userId: 1, path: `/s${i}`, size: 8 })),
    );
    assert.deepEqual(kept.map((k) => k.kept), Array(12).fill(true));
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', warned);
  }
  assert.deepEqual(warnings, []);
});

/**
 * Two workers' QuarantineDirs (each process has its own) on one turn queue, in a file system whose times move
 * a clock tick at a time, as ext4's and xfs's did before Linux 6.13's multigrain timestamps (and ramfs's still
 * do): a mount namespace of the test's own (unshare -Urm, no root needed), as full-disk makes one.
 */
const ROUNDS = 100;
const SCENARIO = `
import { Readable } from 'node:stream';
import { readdirSync, statSync } from 'node:fs';
const { QuarantineDir } = await import(process.argv[2]);
const { Turns } = await import(process.argv[3]);
const turns = new Turns(1);
const limits = { totalBytes: 1 << 30, userBytes: 3072 };
const file = (size) => [() => Readable.from([Buffer.alloc(size, 1)]), { user: 'alice', userId: 1, path: '/x', size }];
let over = 0;
for (let round = 0; round < ${ROUNDS}; round++) {
  const dir = process.argv[1] + '/q' + round;
  const [a, b] = [new QuarantineDir(dir, limits, turns), new QuarantineDir(dir, limits, turns)];
  // b counts alice's directory as it keeps a small file; a keeps 2 KiB right after, within the same tick
  // of the file system's clock as often as not; b's next 2 KiB would pass her 3 KiB.
  await b.keep(...file(10));
  await a.keep(...file(2048));
  await b.keep(...file(2048));
  const mine = dir + '/alice@1';
  if (readdirSync(mine).reduce((sum, name) => sum + statSync(mine + '/' + name).size, 0) > limits.userBytes) over++;
}
console.log(JSON.stringify({ over }));
`;

it('keeps on two workers in one tick of the file system\'s clock stay within the user\'s share', (t) => {
  if (spawnSync('unshare', ['-Urm', 'true']).status !== 0) return t.skip('unshare -Urm fails here (unprivileged user namespaces off)');
  const mount = mkdtempSync(join(dir, 'ramfs-'));
  const module = (path: string) => new URL(path, import.meta.url).href;
  const run = spawnSync(
    'unshare',
    ['-Urm', 'sh', '-c', 'mount -t ramfs ramfs "$1" && exec "$2" --input-type=module -e "$3" "$1" "$4" "$5"', 'sh', mount, process.execPath, SCENARIO, module('../src/scan/quarantine.js'), module('../src/session/turns.js')],
    { encoding: 'utf8' },
  );
  assert.equal(run.status, 0, run.stderr);
  // Before: b trusted its count of alice's directory, whose time a's keep had left as it was, in about one
  // round in five here.
  assert.deepEqual(JSON.parse(run.stdout), { over: 0 }, `rounds of ${ROUNDS} where alice held more than her share`);
});
