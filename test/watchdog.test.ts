import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { REPO } from './helpers/repo.js';
import { watchWorker, type Hang } from '../src/cluster/watchdog.js';

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
  it('from the loop at once, and from the thread pool only once a job got through it', () => {
    const fifo = join(dir, 'never-written');
    execFileSync('mkfifo', [fifo]);
    const watchdog = pathToFileURL(join(REPO, 'dist/cluster/watchdog.js')).href;
    const script = `
      import { openSync, read, writeSync } from 'node:fs';
      import { answerPings } from ${JSON.stringify(watchdog)};
      let hear;
      const t0 = performance.now();
      const say = (line) => console.log(line + ' ' + Math.round(performance.now() - t0));
      const pongs = { loop: 0, pool: 0 };
      answerPings({ onMessage: (l) => (hear = l), send: (m) => say(m.from + ' ' + ++pongs[m.from]) });
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
    assert.ok(at('pool 1') < 300, `the free pool's answer took ${at('pool 1')} ms`);
    // The loop answers at once, the pool's answer is held until its thread is free again, and then given.
    assert.ok(at('loop 2') < at('unblocking'), `the loop did not answer while the pool was stuck:\n${run.stdout}`);
    assert.ok(at('pool 2') >= at('unblocking'), `the pool answered while it was stuck:\n${run.stdout}`);
    assert.ok(at('read') <= at('pool 2'));
  });
});

describe("the primary's watch", () => {
  /** How long `answer` (told of each ping) keeps a watch of `timeoutMs` from finding a hang, and which. */
  function watched(timeoutMs: number, answer: (answered: (from: Hang) => void) => void): Promise<{ hang: Hang; after: number }> {
    const t0 = performance.now();
    // The watch's timer does not hold a process (the primary's own stop does not wait for it): this does meanwhile.
    const alive = setInterval(() => undefined, 1000);
    return new Promise((resolve) => {
      const watch = watchWorker(() => answer((from) => watch.answered(from)), timeoutMs, (hang) => {
        clearInterval(alive);
        resolve({ hang, after: performance.now() - t0 });
      });
    });
  }

  it('ends a worker whose loop answers nothing after its timeout, and one whose pool answers nothing after four', async () => {
    const loop = await watched(200, () => undefined);
    assert.equal(loop.hang, 'loop');
    assert.ok(loop.after >= 200 && loop.after < 600, `the silent loop found after ${loop.after} ms`);
    // The loop answers every ping, the pool none: a pool that waits longer than the loop's timeout is only loaded.
    const pool = await watched(200, (answered) => answered('loop'));
    assert.equal(pool.hang, 'pool');
    assert.ok(pool.after >= 800, `the silent pool found after ${pool.after} ms, before four timeouts`);
  });
});

