import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { SluiceError, fromErrno } from '../session/errors.js';
import type { Session } from '../session/session.js';
import { BadMessage, FXP, PacketFramer, STATUS, Writer, statusPacket, type Packet } from './codec.js';
import { HandleTable } from './handles.js';
import { EXTENSIONS, handlerFor, type HandlerContext } from './handlers.js';
import { statusFor } from './status.js';

export interface ChannelOptions {
  maxHandles: number;
  /** Requests being worked on at once; past it we stop reading (OpenSSH clients keep 64 in flight). */
  maxInFlight: number;
  /** Called on every incoming chunk (idle timer). */
  onActivity(): void;
  /** SYMLINK argument order of this client (see HandlerContext). */
  symlinkTargetFirst: boolean;
  /** Report the subsystem's exit status (ssh and scp exit non-zero without one). */
  exit(status: number): void;
}

/**
 * The SFTP request loop on one subsystem channel. Backpressure both ways:
 * reading stops while too many requests are in flight or while the channel
 * cannot take more output (its SSH window is shut), so memory stays bounded
 * whatever the client does. Every request gets exactly one reply.
 */
export class SftpChannel {
  private readonly framer = new PacketFramer();
  private readonly handles: HandleTable;
  private readonly ctx: HandlerContext;
  private inFlight = 0;
  private waitingForDrain = false;
  private initialized = false;
  private closed = false;

  constructor(
    private readonly stream: Duplex,
    private readonly session: Session,
    private readonly log: Logger,
    private readonly options: ChannelOptions,
  ) {
    this.handles = new HandleTable(options.maxHandles);
    this.ctx = { session, handles: this.handles, maxHandles: options.maxHandles, symlinkTargetFirst: options.symlinkTargetFirst };
    stream.on('data', (chunk: Buffer) => {
      options.onActivity();
      this.receive(chunk);
    });
    stream.on('drain', () => {
      this.waitingForDrain = false;
      this.maybeResume();
    });
    stream.on('error', (err: Error) => this.log.debug({ err: err.message }, 'sftp channel error'));
    stream.on('close', () => void this.shutdown('channel closed'));
    // The client's EOF ends the session: close our side too, or OpenSSH waits for it.
    stream.on('end', () => {
      void this.shutdown('client finished').then(() => {
        options.exit(0);
        stream.end();
      });
    });
  }

  private receive(chunk: Buffer): void {
    let packets: Packet[];
    try {
      packets = this.framer.push(chunk);
    } catch (err) {
      return this.violation(String(err));
    }
    for (const packet of packets) this.dispatch(packet);
  }

  private dispatch(packet: Packet): void {
    if (!this.initialized) {
      // Anything before INIT ends the session, as OpenSSH's server does.
      if (packet.type !== FXP.INIT) return this.violation('request before INIT');
      this.initialized = true;
      const version = new Writer(FXP.VERSION).uint32(3);
      for (const [name, data] of EXTENSIONS) version.string(name).string(data);
      this.send(version.finish());
      return;
    }
    if (packet.type === FXP.INIT || packet.id === null) return this.violation('INIT twice');
    const id = packet.id;
    this.inFlight++;
    if (this.inFlight >= this.options.maxInFlight) this.stream.pause();
    void this.handle(packet.type, id, packet).then((reply) => {
      this.inFlight--;
      this.send(reply);
      this.maybeResume();
    });
  }

  private async handle(type: number, id: number, packet: Packet): Promise<Buffer> {
    const handler = handlerFor(type);
    if (!handler) return statusPacket(id, STATUS.OP_UNSUPPORTED, 'Unsupported request');
    try {
      return await handler(this.ctx, id, packet.body);
    } catch (err) {
      if (err instanceof BadMessage) return statusPacket(id, STATUS.BAD_MESSAGE, 'Malformed request');
      if (!(err instanceof SluiceError) && !(err as NodeJS.ErrnoException).code) {
        this.log.error({ err, type }, 'sftp handler failed');
      }
      const { code, message } = statusFor(fromErrno(err));
      return statusPacket(id, code, message);
    }
  }

  private send(reply: Buffer): void {
    if (this.closed) return;
    if (!this.stream.write(reply)) {
      this.waitingForDrain = true;
      this.stream.pause();
    }
  }

  private maybeResume(): void {
    if (!this.closed && !this.waitingForDrain && this.inFlight < this.options.maxInFlight) this.stream.resume();
  }

  private violation(reason: string): void {
    this.log.warn({ reason }, 'sftp protocol violation; closing');
    void this.shutdown(reason);
    this.stream.destroy();
  }

  private async shutdown(reason: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handles.closeAll(reason);
    await this.session.close();
  }
}
