import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';

// A disk that fills up part-way through a write answers with the bytes it took
// and no error. RLIMIT_FSIZE gives the same partial write on any file system,
// without root: the kernel writes up to the limit and returns that count.
describe('storage: a short write fails the write', () => {
  it('a batch of buffers cut short by the file-size limit rejects with no-space', (t) => {
    if (spawnSync('prlimit', ['--version']).status !== 0) return t.skip('prlimit (util-linux) is not installed');
    const dir = mkdtempSync(join(tmpdir(), 'sluice-short-'));
    try {
      const script = join(dir, 'write.mts');
      const local = pathToFileURL(resolve('src/session/storage/local.ts')).href;
      writeFileSync(
        script,
        `import { openLocalStorage } from ${JSON.stringify(local)};
import { ServerPlaces } from ${JSON.stringify(local.replace('/local.ts', '/server-places.ts'))};
import { WalkTurns } from ${JSON.stringify(local.replace('/local.ts', '/walk-turns.ts'))};
const storage = await openLocalStorage(process.argv[2], new ServerPlaces("/nonexistent-sluice-data", []), new WalkTurns(1));
const loc = await storage.resolve('/big', false);
const file = await loc.openWrite({ create: true, truncate: false, append: false });
try {
  await file.write([Buffer.alloc(60000, 1), Buffer.alloc(60000, 2)], 0);
  console.log('resolved');
} catch (e) {
  console.log('rejected ' + e.kind);
}
await file.close();
await loc.close();
`,
      );
      const home = join(dir, 'home');
      spawnSync('mkdir', [home]);
      const r = spawnSync('prlimit', ['--fsize=100000', process.execPath, '--import', 'tsx', script, home], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(statSync(join(home, 'big')).size, 100000, 'the kernel took part of the batch');
      assert.equal(r.stdout.trim(), 'rejected no-space');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
