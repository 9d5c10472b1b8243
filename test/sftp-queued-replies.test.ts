import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import pino from 'pino';
import { ByteBudget } from '../src/sftp/budget.js';
import { SftpChannel } from '../src/sftp/channel.js';
import { FXP, Writer } from '../src/sftp/codec.js';
import { World, collectGarbage } from './helpers/world.js';

const BUDGET = 256 * 1024;

/**
 * A channel on a session of a real data directory whose client sends and
 * takes nothing the server writes, past INIT: every reply waits in the
 * channel, held against `budget`.
 */
async function unreadChannel(): Promise<{ client: Duplex; budget: ByteBudget; close(): Promise<void> }> {
  const world = await World.open();
  await world.addUser('mona');
  const session = await world.session('mona');
  const client = new Duplex({ read() {}, write() {} });
  const budget = new ByteBudget(BUDGET);
  const gone = new AbortController();
  const channel = new SftpChannel(client, session, pino({ level: 'silent' }), {
    maxHandles: 16,
    maxInFlight: 64,
    budget,
    onActivity() {},
    symlinkTargetFirst: false,
    exit() {},
    gone: gone.signal,
  });
  client.push(new Writer(FXP.INIT).uint32(3).finish());
  return {
    client,
    budget,
    async close() {
      gone.abort();
      await channel.done;
      await world.close();
    },
  };
}

/** `wire` in packets of 32 KiB, as ssh2 hands them over. */
function send(client: Duplex, wire: Buffer): void {
  for (let at = 0; at < wire.length; at += 32 * 1024) client.push(wire.subarray(at, at + 32 * 1024));
}

describe('SFTP replies a client does not read', () => {
  it('leave the requests behind them as bytes, not an object each', async (t) => {
    const { client, budget, close } = await unreadChannel();
    try {
      // Full: of the requests below, the channel starts the first alone (it holds nothing yet).
      budget.take(BUDGET);
      // The smallest request there is, 9 bytes (a type nobody serves): one SSH packet holds 3,640.
      const wire = Buffer.concat(Array.from({ length: 3640 }, (_, i) => new Writer(99, i + 1).finish()));
      await turn();
      collectGarbage();
      const before = process.memoryUsage().heapUsed;
      send(client, wire);
      // The first request's reply comes a few microtasks later; then nothing more can start.
      await turn();
      assert.equal(client.readableLength, 0, 'the channel took the packet they came in');
      assert.ok(client.isPaused(), 'the channel stopped reading');
      collectGarbage();
      const grown = process.memoryUsage().heapUsed - before;
      t.diagnostic(`heap grew by ${grown >> 10} KiB while 3,639 requests waited`);
      // Framed at once, each waiting request held about 200 bytes of heap, none of it counted.
      assert.ok(grown < 128 * 1024, `heap grew by ${grown >> 10} KiB`);
    } finally {
      await close();
    }
  });
});
