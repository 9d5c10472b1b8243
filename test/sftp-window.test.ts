import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { ByteBudget } from '../src/sftp/budget.js';
import { SftpChannel } from '../src/sftp/channel.js';
import { FXP, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { World } from './helpers/world.js';

/**
 * The session channel as ssh2 gives it: what is written goes out while the
 * client's window has room; a write that does not fit is held, its callback
 * with it, until the window opens (WINDOW_ADJUST), and then it and whatever
 * the stream buffered behind it go out at once, in that one call.
 */
class WindowedChannel extends Duplex {
  window = 0;
  /** Reply packets as they went out. */
  readonly out: Buffer[] = [];
  private held: { chunk: Buffer; cb: () => void } | null = null;

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    if (chunk.length <= this.window) {
      this.window -= chunk.length;
      this.out.push(chunk);
      cb();
    } else {
      this.held = { chunk, cb };
    }
  }

  /** The client's WINDOW_ADJUST; returns the bytes that went out during it. */
  open(n: number): number {
    const before = this.sent;
    this.window += n;
    const held = this.held;
    if (held && held.chunk.length <= this.window) {
      this.held = null;
      this.window -= held.chunk.length;
      this.out.push(held.chunk);
      held.cb();
    }
    return this.sent - before;
  }

  get sent(): number {
    return this.out.reduce((n, b) => n + b.length, 0);
  }
}

const READS = 64;
const READ_SIZE = 32 * 1024;

const until = async (what: string, ok: () => boolean) => {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ok(), what);
};

describe('SFTP replies waiting for the client window', () => {
  let world: World;
  before(async () => {
    world = await World.open();
    await world.addUser('win');
    writeFileSync(join(world.home('win'), 'big.bin'), randomBytes(READS * READ_SIZE));
  });
  after(() => world.close());

  /** A channel on `stream` whose READS replies of 32 KiB are all made and wait for a shut window. */
  async function waitingReplies(stream: WindowedChannel): Promise<SftpChannel> {
    stream.window = 64 * 1024;
    const channel = new SftpChannel(stream, await world.session('win'), pino({ level: 'silent' }), {
      maxHandles: 16,
      maxInFlight: READS,
      budget: new ByteBudget(64 * 1024 * 1024),
      onActivity: () => undefined,
      symlinkTargetFirst: false,
      exit: () => undefined,
      gone: new AbortController().signal,
    });
    stream.push(new Writer(FXP.INIT).uint32(3).finish());
    stream.push(new Writer(FXP.OPEN, 1).string('/big.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
    await until('HANDLE', () => stream.out.some((p) => p[4] === FXP.HANDLE));
    const reply = stream.out.find((p) => p[4] === FXP.HANDLE) as Buffer;
    const handle = reply.subarray(13, 13 + reply.readUInt32BE(9));
    stream.window = 0;
    for (let i = 0; i < READS; i++) stream.push(new Writer(FXP.READ, 10 + i).bytes(handle).uint64(i * READ_SIZE).uint32(READ_SIZE).finish());
    await until('the reads done', () => (channel as unknown as { inFlight: number }).inFlight === 0);
    return channel;
  }

  const dataIds = (stream: WindowedChannel) => stream.out.filter((p) => p[4] === FXP.DATA).map((p) => p.readUInt32BE(5)).sort((a, b) => a - b);
  const allIds = Array.from({ length: READS }, (_, i) => 10 + i);

  it('go to ssh2 a turn at a time, so a WINDOW_ADJUST does not send them all in one turn of the event loop', async () => {
    const stream = new WindowedChannel();
    const channel = await waitingReplies(stream);
    // Every READ answered, none sent: the window is shut. ssh2 holds back one reply at most; the rest wait with the channel.
    assert.equal(dataIds(stream).length, 0);
    assert.ok(stream.writableLength <= READ_SIZE + 13, `the stream holds ${stream.writableLength} bytes for the window`);
    // The client opens its window for all of them: one turn sends a bounded part, the next turns the rest.
    const inOneTurn = stream.open(READS * (READ_SIZE + 13));
    assert.ok(inOneTurn > 0 && inOneTurn <= 256 * 1024 + 2 * (READ_SIZE + 13), `${inOneTurn} bytes went out in the turn of the WINDOW_ADJUST`);
    await until('every DATA reply', () => dataIds(stream).length === READS);
    // Answered as the reads complete (SFTP replies carry their request's id): each once.
    assert.deepEqual(dataIds(stream), allIds);
    stream.push(null);
    await channel.done;
  });

  it("still go out after the client's EOF, before the channel ends", async () => {
    const stream = new WindowedChannel();
    const channel = await waitingReplies(stream);
    const finished = new Promise<void>((resolve) => stream.once('finish', () => resolve()));
    stream.push(null);
    await channel.done;
    stream.open(READS * (READ_SIZE + 13));
    await finished;
    assert.deepEqual(dataIds(stream), allIds);
  });
});
