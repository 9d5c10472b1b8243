import type net from 'node:net';
import { LazySet } from '../session/lazy-collections.js';

/**
 * Bytes a transport holds back before they reach its socket, and when it
 * lets them go there (ssh2 during a key exchange: see heldDuringKeyExchange).
 */
export interface HeldBack {
  bytes(): number;
  /** `wake` runs each time what was held back has been handed to the socket. */
  onRelease(wake: () => void): void;
}

/**
 * What a connection's transport was handed and has not sent yet. ssh2 writes
 * to the socket whatever the client's SSH window admits and ignores the
 * socket's own backpressure: a client that opens a wide window and stops
 * reading TCP has every byte sent to it pile up here, in our memory; and
 * while a key exchange runs it holds them in a queue of its own (HeldBack).
 * Each writer on the connection (the SFTP budget, an SCP download) must also
 * stop while this backlog is large.
 */
export class TransportBacklog {
  /** Writers waiting for the socket to drain: woken by one listener, however many wait. None, most of the time (see LazySet). */
  private readonly waiters = new LazySet<() => void>();

  /** `socket` null: ssh2 kept its socket out of reach, and nothing is counted. */
  constructor(
    private readonly socket: net.Socket | null,
    private readonly heldBack: HeldBack | null = null,
  ) {
    // One 'drain' and one 'close' listener for every writer: ten SCP downloads waiting on one connection
    // (sftp.maxChannelsPerConnection) added ten of each, past the emitter's warning at eleven.
    const wake = () => {
      for (const waiter of [...this.waiters]) waiter();
    };
    socket?.on('drain', wake);
    socket?.on('close', wake);
    heldBack?.onRelease(wake);
  }

  /** Bytes handed to the transport and not yet sent. */
  get size(): number {
    return (this.socket?.writableLength ?? 0) + (this.heldBack?.bytes() ?? 0);
  }

  /** `wake` runs each time the socket has sent all it held, and each time the transport lets go what it held back. */
  onDrain(wake: () => void): void {
    this.socket?.on('drain', wake);
    this.heldBack?.onRelease(wake);
  }

  /** Until at most `limit` bytes wait in the transport, or its socket is gone, or `stop` aborts (the writer is gone). */
  async within(limit: number, stop?: AbortSignal): Promise<void> {
    const socket = this.socket;
    // Past the socket's high-water mark its write() has said false, so 'drain' comes once it is empty; what
    // was held back wakes the writers as it goes to the socket.
    while (socket && !socket.destroyed && !stop?.aborted && this.size > limit) await this.woken(stop);
  }

  private woken(stop?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        stop?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      stop?.addEventListener('abort', done, { once: true });
    });
  }
}

/**
 * How far past the writers' limit the backlog may grow before the client is
 * no longer read (readOnlyWhileSent): each writer's last write before it
 * waits (an SFTP reply of at most 256 KiB, an SCP chunk) and ssh2's small
 * messages of its own.
 */
export const READ_SLACK = 1024 * 1024;

/**
 * Stops reading what the client sends while more than `limit` bytes wait to
 * be sent to it, until the socket has sent them all. The writers on a
 * connection wait on its backlog, but ssh2 answers some requests itself (a
 * global request refused, a userauth "none") and writes each answer whatever
 * waits: a client that sent such requests without end and never read its
 * socket grew the server by about 17 MiB a second, past 1 GiB in a minute
 * (found by a review). Unread, its requests stay in the kernel's buffers and
 * its own. The client's idle and login deadlines run on meanwhile.
 *
 * `limit` lies above what the writers that wait on the backlog may leave in
 * it (READ_SLACK past their own limit): a client that stopped reading a
 * download is still heard when it closes the channel.
 */
export function readOnlyWhileSent(socket: net.Socket, limit: number): void {
  let paused = false;
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]): boolean => {
    const ok = write(...args);
    if (!paused && socket.writableLength > limit) {
      paused = true;
      socket.pause();
    }
    return ok;
  }) as typeof socket.write;
  // Past the limit, write() said false (the limit is above the high-water mark): 'drain' comes once all is sent.
  socket.on('drain', () => {
    if (!paused) return;
    paused = false;
    socket.resume();
  });
}
