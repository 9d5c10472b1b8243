import type net from 'node:net';

/**
 * What a connection's socket was handed and has not sent yet. ssh2 writes to
 * the socket whatever the client's SSH window admits and ignores the
 * socket's own backpressure: a client that opens a wide window and stops
 * reading TCP has every byte sent to it pile up here, in our memory. Each
 * writer on the connection (the SFTP budget, an SCP download) must also
 * stop while this backlog is large.
 */
export class TransportBacklog {
  /** Writers waiting for the socket to drain: woken by one listener, however many wait. */
  private readonly waiters = new Set<() => void>();

  /** `socket` null: ssh2 kept its socket out of reach, and nothing is counted. */
  constructor(private readonly socket: net.Socket | null) {
    // One 'drain' and one 'close' listener for every writer: ten SCP downloads waiting on one connection
    // (sftp.maxChannelsPerConnection) added ten of each, past the emitter's warning at eleven.
    const wake = () => {
      for (const waiter of [...this.waiters]) waiter();
    };
    socket?.on('drain', wake);
    socket?.on('close', wake);
  }

  /** Bytes handed to the socket and not yet sent. */
  get size(): number {
    return this.socket?.writableLength ?? 0;
  }

  /** `wake` runs each time the socket has sent all it held. */
  onDrain(wake: () => void): void {
    this.socket?.on('drain', wake);
  }

  /** Until at most `limit` bytes wait in the socket, or it is gone, or `stop` aborts (the writer is gone). */
  async within(limit: number, stop?: AbortSignal): Promise<void> {
    const socket = this.socket;
    // Past the socket's high-water mark its write() has said false, so 'drain' comes once it is empty.
    while (socket && !socket.destroyed && !stop?.aborted && socket.writableLength > limit) await this.woken(stop);
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
