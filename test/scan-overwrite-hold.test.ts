import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configSchema } from '../src/config/schema.js';
import { startedClamd, type Clamd } from './helpers/clamd.js';
import { World, writeFile } from './helpers/world.js';

const O_PATH = 0o10000000;

/*
 * An overwrite holds the file it replaces, to measure after the rename what
 * the rename freed. Held before a scan's verdict, it could describe a file
 * that another upload replaced during the scan: that file's bytes were then
 * counted as freed twice, and a hard link made meanwhile was missed by the
 * quota's check. The hold comes after the verdict.
 */
describe('an overwrite under scanning (a real clamd)', () => {
  let clamd: Clamd;
  let world: World;

  before(async (t) => {
    const started = await startedClamd(t);
    if (!started) return;
    clamd = started;
    const defaults = configSchema.parse({ dataDir: '/unused' });
    world = await World.open({ uploads: { ...defaults.uploads, scan: 'clamd', clamdSocket: clamd.socket, scanTimeout: 30 } });
    await world.addUser('s', { quotaBytes: 1 << 20 });
  });
  after(async () => {
    await world?.close();
    await clamd?.cleanup();
  });

  it('holds the old file only once the verdict is in', async (t) => {
    if (!clamd) return t.skip('no clamd');
    const path = join(world.home('s'), 'site.html');
    const s = await world.session('s');
    await writeFile(s, 'site.html', 'old page, longer');
    const up = await s.openWrite('site.html');
    await up.write(Buffer.from('new page'));
    const pid = Number(readFileSync(join(clamd.dir, 'clamd.pid'), 'utf8').trim());
    const open = fsp.open;
    let heldDuringScan = false;
    let scanning = true;
    fsp.open = (async (...args: Parameters<typeof open>) => {
      if ((Number(args[1] ?? 0) & O_PATH) !== 0 && String(args[0]).endsWith('/site.html') && scanning) heldDuringScan = true;
      return open(...args);
    }) as typeof open;
    // The verdict waits while clamd is stopped.
    process.kill(pid, 'SIGSTOP');
    let closing: Promise<void>;
    try {
      closing = up.close();
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      scanning = false;
      process.kill(pid, 'SIGCONT');
    }
    try {
      await closing;
    } finally {
      fsp.open = open;
    }
    assert.equal(heldDuringScan, false, 'the old file was held while the scan was under way');
    assert.equal(readFileSync(path, 'utf8'), 'new page');
    const user = await world.services.users.get('s');
    assert.deepEqual(await world.services.users.usage(user!.id), { bytes: 8, files: 1 });
  });
});
