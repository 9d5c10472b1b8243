// The quarantine's keeps take turns one at a time (scan/quarantine.ts), with no deadline of their own: each
// waits on one signal that never aborts. Found by the second review of the turn queues: every keep waiting
// in a process listens on that one signal, and an eleventh made Node warn of a memory leak
// (MaxListenersExceededWarning on stderr, outside the server's log) whenever eleven infected uploads were
// kept at once.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, it } from 'node:test';
import { QuarantineDir } from '../src/scan/quarantine.js';
import { Turns } from '../src/session/turns.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-keeps-'));
after(() => rmSync(dir, { recursive: true, force: true }));

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
