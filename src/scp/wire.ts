import type { Duplex } from 'node:stream';
import { ByteQueue } from '../wire/byte-queue.js';
import { drainedOrEnded } from '../wire/drained.js';

/** The peer broke the SCP protocol: the run ends, nothing more is read. */
export class ScpProtocolError extends Error {
  override name = 'ScpProtocolError';
}

/** The channel is gone (the client closed it, or the connection dropped): nothing more can be sent, nobody is left to tell. */
export class ScpChannelClosed extends Error {
  override name = 'ScpChannelClosed';
}

/** How an SCP channel's bytes are paced, both ways. */
export interface ScpFlow {
  /** A read took bytes off the channel: its SSH window may re-open (see sftp/window.ts ownWindow). */
  taken(): void;
  /** Resolves once the connection's transport can take more, or `stop` aborts (see wire/backlog.ts). */
  room(stop: AbortSignal): Promise<void>;
}

/** Control lines (C, D, E, T, and the text after a 1 or 2 reply) are short; a longer one is not SCP. */
const MAX_LINE = 8192;

/**
 * One SCP channel, read on demand: the protocol alternates control lines,
 * one-byte replies and file data of a size announced before, so the reader
 * takes exactly what each step needs. The channel stays in paused mode: what
 * the client sent waits in the SSH window until it is asked for.
 *
 * `gone` aborts once the client closed the channel or the connection
 * dropped. ssh2 says neither on the channel in time: it completes no write
 * once the channel is closing, and emits the channel's 'close' only after
 * its incoming side has been read to the end, which a reader that reads only
 * when a reply is due never does while it waits to send. Reading is
 * untouched: what the client sent before it closed is still read on demand,
 * until the run next has something to send.
 */
export class ScpWire {
  private leftover: Buffer | null = null;
  /** Nothing more will be read: the client's EOF, or the channel gone. */
  private ended = false;
  /** ssh2 said the channel closed or failed. */
  private broken = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly channel: Duplex,
    private readonly gone: AbortSignal,
    private readonly flow: ScpFlow,
  ) {
    const signal = () => {
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    channel.on('readable', signal);
    channel.on('end', () => {
      this.ended = true;
      signal();
    });
    for (const e of ['close', 'error'] as const) {
      channel.on(e, () => {
        this.ended = true;
        this.broken = true;
        signal();
      });
    }
  }

  /** Nothing more can be sent. */
  private get closed(): boolean {
    return this.broken || this.gone.aborted;
  }

  /**
   * What was received and not yet taken, left in place: null at the end of
   * the channel. Readers look, then take() what they use, so nothing they
   * looked past can be put back out of order (a line read from the head of a
   * larger read once kept the rest of its 8 KiB and dropped what lay beyond:
   * a control line sent with its file in one write lost the file).
   */
  private async peek(): Promise<Buffer | null> {
    for (;;) {
      if (this.leftover) return this.leftover;
      const c = this.channel.read() as Buffer | null;
      if (c) {
        this.flow.taken();
        this.leftover = c;
        return c;
      }
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** The first `n` bytes of what peek() returned, taken. */
  private take(n: number): Buffer {
    const c = this.leftover as Buffer;
    this.leftover = n < c.length ? c.subarray(n) : null;
    return c.subarray(0, n);
  }

  /** Up to `max` bytes, or null at the end of the channel. */
  async chunk(max: number): Promise<Buffer | null> {
    const c = await this.peek();
    return c && this.take(Math.min(max, c.length));
  }

  /** One byte (a reply code), or null at the end. */
  async byte(): Promise<number | null> {
    const c = await this.chunk(1);
    return c ? (c[0] as number) : null;
  }

  /** A line without its newline, or null at the end before any byte of it. */
  async line(): Promise<string | null> {
    // The client may send the line a byte per SSH message.
    const parts = new ByteQueue();
    for (;;) {
      const c = await this.peek();
      if (!c) {
        if (parts.size === 0) return null;
        throw new ScpProtocolError('channel ended inside a line');
      }
      const room = MAX_LINE + 1 - parts.size;
      const nl = c.subarray(0, room).indexOf(0x0a);
      if (nl >= 0) {
        parts.push(this.take(nl + 1).subarray(0, nl));
        return parts.takeAll().toString('utf8');
      }
      parts.push(this.take(Math.min(room, c.length)));
      if (parts.size > MAX_LINE) throw new ScpProtocolError('line too long');
    }
  }

  /**
   * The peer's answer to what we sent: 0 is yes; 1 (a warning: this file
   * failed) and 2 (fatal) carry a message line. null: the channel ended.
   */
  async reply(): Promise<{ ok: true } | { ok: false; fatal: boolean; message: string } | null> {
    const code = await this.byte();
    if (code === null) return null;
    if (code === 0) return { ok: true };
    if (code !== 1 && code !== 2) throw new ScpProtocolError(`unexpected reply byte ${code}`);
    return { ok: false, fatal: code === 2, message: (await this.line()) ?? '' };
  }

  /**
   * Send with backpressure: resolves once the channel and the connection
   * under it take more. The channel alone is not enough: it takes whatever
   * the client's SSH window admits, however much its socket holds unsent.
   */
  async send(data: Buffer | string): Promise<void> {
    if (this.closed) throw new ScpChannelClosed();
    if (!this.channel.write(data)) await drainedOrEnded(this.channel, 'close', this.gone);
    await this.flow.room(this.gone);
    if (this.closed) throw new ScpChannelClosed();
  }

  /** A reply of ours: OK. */
  ok(): Promise<void> {
    return this.send(Buffer.of(0));
  }

  /** A reply of ours: scpFailure. */
  fail(message: string, fatal = false): Promise<void> {
    return this.send(scpFailure(message, fatal));
  }
}

/** SCP's failure reply: this file failed (1), or the run is over (2). Newlines in the text would end it early. */
export function scpFailure(message: string, fatal: boolean): Buffer {
  return Buffer.concat([Buffer.of(fatal ? 2 : 1), Buffer.from(`scp: ${message.replace(/[\r\n]/g, ' ')}\n`)]);
}
