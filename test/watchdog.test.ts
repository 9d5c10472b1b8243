import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { REPO } from './helpers/repo.js';

/*
 * The worker's answer to the primary's pings (cluster/watchdog.ts) waits for
 * its thread pool as well as its event loop: a worker whose every pool thread
 * is stuck (a home on a hung network mount) must not look alive. A process of
 * its own with a pool of one thread, that thread held by a read of a FIFO
 * nobody writes, is such a worker. (test/cluster.test.ts has the whole server
 * ending a worker whose loop stopped.)
 */
const dir = mkdtempSync(join(tmpdir(), 'sluice-watchdog-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('a worker answers pings', () => {
  it('at once while its thread pool runs, and not while every pool thread is stuck', () => {
    const fifo = join(dir, 'never-written');
    execFileSync('mkfifo', [fifo]);
    const watchdog = pathToFileURL(join(REPO, 'dist/cluster/watchdog.js')).href;
    const script = `
      import { openSync, read, writeSync } from 'node:fs';
      import { answerPings } from ${JSON.stringify(watchdog)};
      let hear;
      const t0 = performance.now();
      const say = (line) => console.log(line + ' ' + Math.round(performance.now() - t0));
      answerPings({ onMessage: (l) => (hear = l), send: () => say('pong ' + ++pongs) });
      let pongs = 0;
      hear({ t: 'ping' });
      setTimeout(() => {
        // Read and write: the open does not wait for a writer, the read waits for bytes on the pool's one thread.
        const fd = openSync(${JSON.stringify(fifo)}, 'r+');
        read(fd, Buffer.alloc(1), 0, 1, null, () => say('read'));
        hear({ t: 'ping' });
        setTimeout(() => {
          say('unblocking');
          writeSync(fd, 'x');
        }, 1000);
      }, 300);
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.trim().split('\n').map((l) => l.split(' '));
    const at = (what: string) => {
      const line = lines.find((l) => l.slice(0, -1).join(' ') === what);
      assert.ok(line, `no "${what}" in:\n${run.stdout}`);
      return Number(line.at(-1));
    };
    assert.ok(at('pong 1') < 300, `the free pool's answer took ${at('pong 1')} ms`);
    // Held until the pool's thread was free again, and then given.
    assert.ok(at('pong 2') >= at('unblocking'), `answered while the pool was stuck:\n${run.stdout}`);
    assert.ok(at('read') <= at('pong 2'));
  });
});
