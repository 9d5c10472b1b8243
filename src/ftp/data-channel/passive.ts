import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { plainAddress } from '../../auth/ip-rules.js';
import type { DataTlsUse, TlsBinding } from '../tls.js';
import type { ClosingData } from './closing.js';
import { randomPortOrder } from './ports.js';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export interface PassiveOptions {
  /** Local address to listen on: the one the control connection arrived at. */
  host: string;
  range: readonly [number, number];
  /** Only this client address may connect (no port theft). */
  peer: string;
  /** A data connection's client address, found as the control connection's was (PROXY header); null: it was closed. */
  origin(socket: Socket): Promise<string | null>;
  timeoutMs: number;
  /**
   * PROT P at the time of PASV: TLS starts once the client speaks and the
   * transfer command has come. `closing`: the control connection's data
   * connections held open to end cleanly (see dismiss).
   */
  tls: { binding: TlsBinding; mustResume: boolean; timeoutMs: number; closing: ClosingData } | null;
  onForeignPeer(address: string): void;
  /** The control connection has closed: the search for a free port stops. */
  abandoned(): boolean;
  /** The port is no longer listening: accepted, timed out or closed (may come more than once). */
  onStopListening(): void;
}

/**
 * Ports tried before the event loop gets a turn. A listen that fails (its
 * port taken) costs about 0.17 ms, all of it without a turn (its error comes
 * on process.nextTick): with the range taken, one PASV stopped every session
 * of the process for the whole range (0.3 s for 2,000 ports, found by a
 * review), and a client could send them back to back.
 */
const TRIES_PER_TURN = 16;

/**
 * The listen errors that belong to one port: the next port may do. Any other
 * (EADDRNOTAVAIL: the control connection's local address cannot be listened
 * on, an IPv6 link-local address without its scope, an address gone) every
 * port gives alike, and searched on, every EPSV tried the whole range for
 * nothing (found by a review): the first ends the search.
 */
const PORT_ERRORS = new Set(['EADDRINUSE', 'EACCES']);

/** The search stopped: the control connection closed meanwhile. */
export class PassiveAbandoned extends Error {}

/**
 * One passive data port: listens on a free port of the range, accepts exactly
 * one connection from the control connection's address, then closes; or
 * closes when the accept timeout passes. Nothing leaks a port.
 */
export class PassiveEndpoint {
  private accepted: Promise<Socket>;
  private settle!: { resolve(s: Socket): void; reject(e: Error): void };
  private readonly timer: NodeJS.Timeout;
  private socket: Socket | null = null;
  private spoke = false;
  /** Set by the transfer command, which lets the handshake start: what its TLS is for. */
  private use: DataTlsUse | null = null;
  private handshakeStarted = false;
  private alive = true;
  private readonly tls: PassiveOptions['tls'];
  private readonly secured = deferred<TLSSocket>();
  private readonly onStopListening: () => void;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    opts: PassiveOptions,
  ) {
    this.tls = opts.tls;
    this.onStopListening = opts.onStopListening;
    this.accepted = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Nobody may be waiting yet; an unobserved failure is not an error of the process.
    this.accepted.catch(() => undefined);
    this.timer = setTimeout(() => this.fail(new Error('data connection timed out')), opts.timeoutMs);
    this.timer.unref();
    server.on('connection', (socket) => void this.admit(socket, opts));
  }

  private async admit(socket: Socket, opts: PassiveOptions): Promise<void> {
    socket.on('error', () => undefined);
    const from = await opts.origin(socket);
    if (from === null) return;
    if (from !== plainAddress(opts.peer) || this.socket) {
      opts.onForeignPeer(from);
      socket.destroy();
      return;
    }
    if (!this.alive) {
      // The client's own, come while its origin was looked up, after the command was refused (or the wait
      // ended): not a foreign one, and ended as every connection no transfer took (a review saw it warned of).
      this.dismiss(socket);
      return;
    }
    this.socket = socket;
    // The TLS session ticket for the next transfer must not wait behind Nagle's algorithm.
    socket.setNoDelay(true);
    // Under PROT P the handshake starts once the client speaks and the transfer command has
    // come: some clients speak before they send the command, others wait for 150 (see openDataStream).
    if (opts.tls) {
      socket.once('readable', () => {
        this.spoke = true;
        this.startTls();
      });
    }
    clearTimeout(this.timer);
    this.stopListening();
    this.settle.resolve(socket);
  }

  static async open(opts: PassiveOptions): Promise<PassiveEndpoint> {
    // A closed control socket has no local address, and listen() without a host takes every address.
    if (net.isIP(opts.host) === 0) throw new Error('no local address to listen on');
    let tries = 0;
    for (const port of randomPortOrder(...opts.range)) {
      if (++tries % TRIES_PER_TURN === 0) {
        await new Promise(setImmediate);
        if (opts.abandoned()) throw new PassiveAbandoned('control connection closed');
      }
      const server = net.createServer({ pauseOnConnect: true });
      const failure = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
        server.once('error', resolve);
        server.listen({ host: opts.host, port, exclusive: true }, () => resolve(null));
      });
      if (!failure) {
        server.on('error', () => undefined);
        return new PassiveEndpoint(server, port, opts);
      }
      server.close();
      if (!PORT_ERRORS.has(failure.code ?? '')) throw failure;
    }
    throw new Error('no passive port free');
  }

  /** False once the accept timed out or the endpoint was closed. */
  get usable(): boolean {
    return this.alive;
  }

  /** Whether the client's data connection is in (it connects after EPSV, before or after its transfer command). */
  get connected(): boolean {
    return this.socket !== null;
  }

  /** Whether this endpoint runs the TLS handshake itself (PROT P at PASV time). */
  get tlsReady(): boolean {
    return this.tls !== null;
  }

  /** Whether the client has begun the TLS handshake (it spoke before being told 150). */
  get clientSpoke(): boolean {
    return this.spoke;
  }

  /**
   * Under PROT P: the data connection once its handshake is done. The
   * handshake waits for this call, as TLS over an upload's connection is
   * made so that its end can be checked (`use.needCloseNotify`, see
   * TlsBinding.acceptData), which would cost a download dearly, and whether
   * it hands out a session ticket depends on the transfer too. vsftpd does
   * not even accept the data connection before the command, so no client
   * can need the handshake before it sends one.
   */
  secureConnection(use: DataTlsUse): Promise<TLSSocket> {
    this.use = use;
    this.startTls();
    return this.secured.promise;
  }

  private startTls(): void {
    const tls = this.tls;
    if (!tls || !this.spoke || this.use === null || this.handshakeStarted || !this.socket) return;
    this.handshakeStarted = true;
    tls.binding.acceptData(this.socket, tls.timeoutMs, tls.mustResume, this.use).then(this.secured.resolve, this.secured.reject);
  }

  /** The accepted connection (waits for it until the timeout). */
  connect(): Promise<Socket> {
    return this.accepted;
  }

  close(): void {
    this.fail(new Error('data channel closed'));
    if (this.socket) this.dismiss(this.socket);
  }

  /**
   * A connection that no transfer took (its command was refused, or never
   * came). Under PROT P its handshake is finished, whether the client began
   * it yet or not, and the connection ended with close_notify: cut off, or
   * closed before its ClientHello came (which the kernel then answers with a
   * reset), clients that handshake before the command (basic-ftp) report
   * that, not the refusal sent on the control connection (seen as a flaky
   * ECONNRESET in the suite). A client that never speaks is cut at the
   * handshake's timeout, or soon after its control connection closed; how
   * many may wait so is bounded (ClosingData): uncounted, a client that
   * connected to each passive port and never spoke held a socket for each
   * EPSV it sent for dataTimeout (found by a review).
   */
  private dismiss(socket: Socket): void {
    // Gone already (the client closed it): nothing waits, and its close, past, would never take it off the count.
    if (socket.destroyed) return;
    const tls = this.tls;
    if (!tls || this.handshakeStarted || !tls.closing.hold(socket, tls.timeoutMs)) {
      socket.destroy();
      return;
    }
    this.handshakeStarted = true;
    tls.binding.acceptData(socket, tls.timeoutMs, tls.mustResume, { needCloseNotify: false, tickets: true }).then(
      (secure) => {
        secure.on('error', () => undefined);
        secure.end();
        secure.resume();
      },
      () => socket.destroy(),
    );
  }

  private stopListening(): void {
    if (this.server.listening) this.server.close();
    this.onStopListening();
  }

  private fail(err: Error): void {
    if (!this.socket) this.alive = false;
    clearTimeout(this.timer);
    this.stopListening();
    this.settle.reject(err);
    this.secured.reject(err);
  }
}
