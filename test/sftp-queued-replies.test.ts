import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { Session } from '../src/session/session.js';
import { ByteBudget } from '../src/sftp/budget.js';
import { SftpChannel } from '../src/sftp/channel.js';
import { FXP, Writer } from '../src/sftp/codec.js';
import { World, collectGarbage } from './helpers/world.js';

/**
 * What the channel was measured to hold for each STAT reply (41 bytes) its
 * client had not taken, on Node 20: its Buffer object and its share of the
 * pool slabs, after a full collection (see HELD_OVERHEAD).
 */
const HELD_PER_REPLY = 240;
const BUDGET = 256 * 1024;

/**
 * A channel on a session of a real data directory whose client sends and
 * takes nothing the server writes, past INIT: every reply waits in the
 * channel, held against `budget`.
 */
async function unreadChannel(): Promise<{ session: Session; client: Duplex; budget: ByteBudget; close(): Promise<void> }> {
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
    session,
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
  it('stop the channel reading once what holding them costs fills the budget, not once their bytes do', async (t) => {
    const { session, client, close } = await unreadChannel();
    try {
      // The STATs the channel started, and those done: once even, with the client's requests left
      // unread, nothing is under way that could start another.
      let begun = 0;
      let ended = 0;
      const stat = session.stat.bind(session);
      session.stat = async (...args) => {
        begun++;
        try {
          return await stat(...args);
        } finally {
          ended++;
        }
      };
      // More than the budget holds by their bytes alone (6,393 replies of 41 bytes).
      const count = 8000;
      send(client, Buffer.concat(Array.from({ length: count }, (_, i) => new Writer(FXP.STAT, i + 1).string('/').finish())));
      while (!(begun > 0 && begun === ended && (client.isPaused() || begun === count))) await sleep(5);
      t.diagnostic(`${begun} STATs read of ${count}`);
      assert.ok(client.readableLength > 0, `the channel read all ${count} STATs`);
      // One request past the budget may be let in: the first a channel holding nothing asks for.
      assert.ok(begun * HELD_PER_REPLY <= BUDGET + HELD_PER_REPLY, `${begun} STAT replies held, about ${(begun * HELD_PER_REPLY) >> 10} KiB for a budget of ${BUDGET >> 10} KiB`);
      assert.ok(begun * HELD_PER_REPLY > BUDGET / 2, `only ${begun} STATs were read`);
    } finally {
      await close();
    }
  });

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
      // Framed at once, each waiting request held about 200 bytes of heap, none of it counted: +723 KiB. Held as
      // bytes, nothing or close to it; a clean CI run of the whole suite measured +132 KiB once (what else the
      // process compiled and kept meanwhile), so the bound is half the old growth.
      assert.ok(grown < 360 * 1024, `heap grew by ${grown >> 10} KiB`);
    } finally {
      await close();
    }
  });
});
