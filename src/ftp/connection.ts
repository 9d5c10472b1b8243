import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { plainAddress } from '../auth/ip-rules.js';
import type { Guest } from '../security/gate.js';
import { RefusalLog } from '../security/refusals.js';
import { SluiceError } from '../session/errors.js';
import type { Session } from '../session/session.js';
import { drainedOrEnded } from '../wire/drained.js';
import { GOODBYE_MS } from '../wire/goodbye.js';
import type { ActiveTransfer, CommandSpec, CommandTable, FtpContext, FtpControl } from './control.js';
import type { DataEndpoint } from './data-channel/channel.js';
import { ClosingData } from './data-channel/closing.js';
import { PassivePlace } from './data-channel/place.js';
import { ALL_FACTS, type Fact } from './facts.js';
import { LineReader, MAX_LINE, isAbort, isHttpVerb, parseCommand, type LineEvent } from './lines.js';
import { Code, errorReply, formatReply, replyLine } from './replies.js';
import type { TlsBinding } from './tls.js';

/** Bytes received and not yet taken as commands before we stop reading the socket. */
const MAX_UNREAD = 16 * 1024;
/**
 * Replies not yet taken by the client before we stop taking its commands:
 * one that pipelines commands and never reads would otherwise grow the
 * server's memory by every reply (GBs, before login too, found by a review)
 * while its commands kept the event loop from everyone else.
 */
const MAX_UNSENT = 64 * 1024;
/** Lines of a streamed reply gathered into one write: a TLS record, not one per line. */
const REPLY_CHUNK = 16 * 1024;
/** About what a line kept as a string in an object costs in V8's heap, whatever its length. */
const LINE_OBJECT_BYTES = 64;
/** Commands run back to back before the event loop gets a turn: pipelined ones that answer at once never wait. */
const COMMANDS_PER_TURN = 8;

/**
 * What a line read ahead counts for: its bytes, or, too long to keep, the
 * bytes it took to be one; at least what its object costs in the heap, so
 * that MAX_UNREAD of empty lines is a few hundred objects, not thousands.
 */
function lineCost(event: LineEvent): number {
  return 'line' in event ? Math.max(Buffer.byteLength(event.line) + 2, LINE_OBJECT_BYTES) : MAX_LINE;
}

/**
 * A line read ahead; an ABOR among them has aborted the transfer it was read behind, and is answered for
 * that whatever runs between (found by a review: behind a REIN, it aborted the upload, then was answered
 * 530 as a command of no session, and one behind a STOR was answered `No transfer to abort.`).
 */
type AheadEvent = LineEvent | { line: string; aborted: ActiveTransfer };

/**
 * One control connection: greeting, pre-auth, authenticated. It owns the
 * socket, the session and the data endpoint, and closes all of them once.
 */
export class FtpConnection implements FtpControl {
  readonly id = randomUUID();
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly log: Logger;
  readonly refusals: RefusalLog;
  socket: Socket;
  secure = false;
  pbsz = false;
  /** Data channel protection: C clear, P private (TLS). */
  prot: 'C' | 'P' = 'C';
  ascii = true;
  userName: string | null = null;
  session: Session | null = null;
  restOffset = 0;
  renameFrom: string | null = null;
  epsvAll = false;
  mlstFacts: ReadonlySet<Fact> = ALL_FACTS;
  endpoint: DataEndpoint | null = null;
  private running: ActiveTransfer | null = null;
  /** This connection's own TLS sessions: its data connections must resume one of them. */
  readonly tlsBinding: TlsBinding;
  readonly closingData: ClosingData;
  readonly passivePlace: PassivePlace;

  private readonly reader = new LineReader();
  /**
   * Lines read on while a command waits for the running transfer (readAhead): they run next, in
   * order, and `aheadBytes` counts them with what the reader holds.
   */
  private readonly ahead: AheadEvent[] = [];
  private aheadBytes = 0;
  /** The transfer a command waits for before it can run: an ABOR read behind that command aborts it. */
  private waitingFor: ActiveTransfer | null = null;
  /** Replies due while a streamed one goes out (a transfer's 226 during STAT): they follow its last line. */
  private held: string[] | null = null;
  private draining = false;
  private closed = false;
  private readonly idle: NodeJS.Timeout;
  /** The transfer and its bytes when the idle timer last found one running. */
  private idleMark: { transfer: ActiveTransfer; bytes: number } | null = null;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);

  constructor(
    raw: Socket,
    readonly ctx: FtpContext,
    readonly commands: CommandTable,
    readonly implicitTls: boolean,
    /** Admission and login policy: the pre-login deadline, failed tries, the per-user limit. */
    readonly guest: Guest,
    private readonly release: () => void,
  ) {
    this.socket = raw;
    this.tlsBinding = ctx.tls.bind();
    this.closingData = new ClosingData(ctx.closingData);
    this.passivePlace = new PassivePlace(ctx.dataPlace);
    // The gate's address for this client: a trusted balancer's PROXY header, else the socket's peer.
    this.remoteAddress = guest.ip;
    this.remotePort = guest.port;
    this.log = ctx.log.child({ conn: this.id, ip: this.remoteAddress });
    this.refusals = new RefusalLog(this.log);
    raw.on('error', (err) => this.log.debug({ err: err.message }, 'control socket error'));
    raw.on('close', () => void this.close('peer closed'));
    this.idle = setTimeout(() => this.onIdle(), ctx.config.idleTimeout * 1000);
    this.idle.unref();
    guest.whenExpired(() => void this.closeAfterReply(Code.ServiceUnavailable, 'Login timeout.'));
  }

  /** The local address clients reached us at (PASV replies, passive listeners). */
  get localAddress(): string {
    return plainAddress(this.socket.localAddress ?? '');
  }

  get protocol(): 'ftp' | 'ftps' {
    return this.secure ? 'ftps' : 'ftp';
  }

  async start(): Promise<void> {
    if (this.implicitTls) {
      try {
        this.adopt(await this.tlsBinding.accept(this.socket, 30_000));
      } catch (err) {
        this.log.debug({ err: String(err) }, 'implicit TLS handshake failed');
        // A client that sent nothing only probed the port: that scores nothing.
        if (this.socket.bytesRead > 0) this.guest.handshakeFailed(err);
        return this.close('tls handshake failed');
      }
      this.prot = 'P';
    }
    this.socket.on('data', this.onData);
    this.reply(Code.Ready, 'sluice FTP server ready.');
  }

  reply(code: number, ...lines: string[]): void {
    const text = formatReply(code, lines);
    if (this.held) this.held.push(text);
    else this.write(text);
  }

  /**
   * A multi-line reply whose lines come one at a time (STAT of a directory,
   * a line per entry), written as they come and only while fewer than
   * MAX_UNSENT bytes wait for the client. The check before each command
   * cannot bound one reply: STAT of a large directory, built whole, stayed
   * in memory for each connection that never read it, until its idle timeout
   * (found by a review). A client that takes the reply is not idle. Lines
   * that fail once some have gone out can only end the reply, with a last
   * line that says so; before that, the command fails as usual.
   */
  async streamReply(code: number, lines: AsyncIterable<string>): Promise<void> {
    this.held = [];
    let pending: string | null = null;
    let chunk = '';
    let written = false;
    try {
      for await (const line of lines) {
        if (this.closed) return;
        if (pending !== null) chunk += replyLine(code, pending, chunk === '' && !written ? 'first' : 'inner');
        pending = line;
        if (chunk.length < REPLY_CHUNK) continue;
        this.write(chunk);
        chunk = '';
        written = true;
        if (this.socket.writableLength > MAX_UNSENT) {
          await drainedOrEnded(this.socket, 'close');
          this.active();
        }
      }
      this.write(chunk + replyLine(code, pending ?? '', 'last'));
    } catch (err) {
      if (!written) throw err;
      this.log.error({ err }, 'streamed reply failed');
      this.write(chunk + replyLine(code, pending ?? '', 'inner') + replyLine(code, 'Cut short by a local error.', 'last'));
    } finally {
      const held = this.held;
      this.held = null;
      for (const text of held) this.write(text);
    }
  }

  private write(text: string): void {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(text);
  }

  /** Take the REST offset for this transfer; it applies once. */
  takeRestOffset(): number {
    const offset = this.restOffset;
    this.restOffset = 0;
    return offset;
  }

  /** Replace the data endpoint, closing the previous one; once the connection has closed, the new one is closed too. */
  setEndpoint(endpoint: DataEndpoint | null): void {
    this.endpoint?.close();
    this.endpoint = null;
    if (this.closed) endpoint?.close();
    else this.endpoint = endpoint;
  }

  /** Log out but keep the connection (REIN, AUTH): the next USER starts afresh, with every parameter at its default (RFC 959 REIN). */
  async logout(): Promise<void> {
    this.setEndpoint(null);
    // Counted for the user logged in: the next one takes a place of its own.
    this.passivePlace.giveBack();
    this.epsvAll = false;
    this.ascii = true;
    this.mlstFacts = ALL_FACTS;
    this.userName = null;
    this.renameFrom = null;
    this.restOffset = 0;
    const session = this.session;
    this.session = null;
    this.guest.logout();
    await session?.close();
  }

  /**
   * AUTH TLS: stop reading plaintext before 234, refuse anything pipelined
   * behind the AUTH command (it would be taken as sent under TLS), then hand
   * the socket to the TLS engine and start over at login.
   */
  async upgradeToTls(): Promise<void> {
    this.socket.off('data', this.onData);
    this.socket.pause();
    // Lines read ahead while AUTH waited for a transfer count too: they were sent in clear. So do bytes read
    // ahead that made no line (found by a review: `AUTH TLS` behind an upload, then IAC SB, or the start of a
    // line too long, got 234, and the Telnet state or the line being dropped swallowed the commands under TLS).
    if (this.unread > 0 || this.reader.midLine) {
      this.log.warn('bytes pipelined after AUTH TLS; closing');
      this.reply(Code.ProtectionRefused, 'Pipelined commands after AUTH are refused.');
      this.guest.offence('protocol-abuse');
      return this.close('pipelined after AUTH');
    }
    await new Promise<void>((resolve) => this.socket.write(formatReply(Code.SecurityExchangeOk, ['Proceed with negotiation.']), () => resolve()));
    try {
      this.adopt(await this.tlsBinding.accept(this.socket, 30_000));
    } catch (err) {
      this.log.debug({ err: String(err) }, 'AUTH TLS handshake failed');
      if (!this.session) this.guest.handshakeFailed(err);
      return this.close('tls handshake failed');
    }
    await this.logout();
    this.pbsz = false;
    this.prot = 'C';
    this.socket.on('data', this.onData);
    this.socket.resume();
  }

  private adopt(secure: TLSSocket): void {
    this.socket = secure;
    this.secure = true;
    secure.on('error', (err) => this.log.debug({ err: err.message }, 'control TLS error'));
    secure.on('close', () => void this.close('peer closed'));
    // Closed between the handshake and now (TlsBinding.accept waits a turn): its 'close' has gone by.
    if (secure.destroyed) void this.close('peer closed');
  }

  /** Bytes received and not yet run as commands: in the reader, or read ahead. */
  private get unread(): number {
    return this.reader.pending + this.aheadBytes;
  }

  private receive(chunk: Buffer): void {
    this.reader.feed(chunk);
    this.readAhead();
    if (this.unread >= MAX_UNREAD) this.socket.pause();
    void this.drain();
  }

  /**
   * While a command waits for the running transfer to end, the lines behind
   * it are read on (up to MAX_UNREAD), kept to run in order after it, and an
   * ABOR among them aborts that transfer at once: ABOR is the one command a
   * client sends to end a transfer it no longer wants (RFC 959 4.1.3), and
   * found by a review, one pipelined behind a second STOR (`STOR a`, `STOR
   * b`, `ABOR`) waited behind that STOR, which waited for the first upload to
   * end, which nothing ended: no reply until the idle timeout ended the
   * session. The replies still come in order: the aborted transfer's 426,
   * then the commands between, then the ABOR's own 226.
   */
  private readAhead(): void {
    while (this.waitingFor && this.aheadBytes < MAX_UNREAD) {
      const event = this.reader.next();
      if (!event) return;
      this.aheadBytes += lineCost(event);
      if ('line' in event && isAbort(event.line)) {
        this.waitingFor.abort();
        this.ahead.push({ ...event, aborted: this.waitingFor });
      } else {
        this.ahead.push(event);
      }
    }
  }

  async abortTransfer(transfer: ActiveTransfer): Promise<void> {
    transfer.abort();
    await transfer.done;
    this.reply(Code.TransferComplete, 'ABOR successful.');
  }

  async transferEnded(): Promise<void> {
    const transfer = this.transfer;
    if (!transfer) return;
    this.waitingFor = transfer;
    this.readAhead();
    try {
      await transfer.done;
    } finally {
      this.waitingFor = null;
    }
  }

  /** The next command line: one read ahead first, else the reader's. */
  private nextEvent(): AheadEvent | null {
    const event = this.ahead.shift();
    if (!event) return this.reader.next();
    this.aheadBytes -= lineCost(event);
    return event;
  }

  /**
   * Run the commands received, one at a time, each only while fewer than
   * MAX_UNSENT bytes of replies wait for the client (past that, once they
   * have all gone), giving the event loop a turn every few: a client that
   * does not read stalls itself alone, and its idle timer, no longer
   * refreshed, ends it.
   */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      let run = 0;
      while (!this.closed) {
        if (this.socket.writableLength > MAX_UNSENT) await drainedOrEnded(this.socket, 'close');
        if (++run % COMMANDS_PER_TURN === 0) await new Promise(setImmediate);
        if (this.closed) break;
        const event = this.nextEvent();
        // Also when no line came: the bytes may have been part of one too long to keep.
        if (this.unread < MAX_UNREAD / 2 && this.socket.isPaused() && this.socket.listenerCount('data') > 0) {
          this.socket.resume();
        }
        if (!event) break;
        if ('tooLong' in event) {
          this.reply(Code.SyntaxError, 'Command line too long.');
          continue;
        }
        if ('aborted' in event) await this.abortTransfer(event.aborted);
        else await this.execute(event.line);
      }
    } finally {
      this.draining = false;
    }
  }

  get transfer(): ActiveTransfer | null {
    return this.running;
  }

  /** A transfer's end starts the idle timer again: the client was busy with it until then. */
  set transfer(transfer: ActiveTransfer | null) {
    this.running = transfer;
    if (transfer === null && !this.closed) this.idle.refresh();
  }

  /**
   * The client did something: the idle timer starts again, unless a transfer
   * runs. Then what counts is whether its data connection moves (onIdle):
   * found by a review, a client that sent NOOP every few seconds while its
   * download was never read put the idle look off each time, and held the
   * stalled transfer for good.
   */
  private active(): void {
    if (!this.transfer) this.idle.refresh();
  }

  private async execute(line: string): Promise<void> {
    this.active();
    const { verb, arg } = parseCommand(line);
    if (isHttpVerb(verb, line, this.session === null)) {
      this.log.warn({ verb: verb.slice(0, 16) }, 'HTTP request on the FTP port; closing');
      this.guest.offence('protocol-abuse');
      return this.close('http verb');
    }
    const spec: CommandSpec | undefined = Object.hasOwn(this.commands, verb) ? this.commands[verb] : undefined;
    if (!spec) {
      this.reply(Code.SyntaxError, 'Unknown command.');
      return;
    }
    const session = this.session;
    if (spec.auth && !session) {
      this.reply(Code.NotLoggedIn, 'Please login with USER and PASS.');
      return;
    }
    const badArgument = spec.arg === 'required' && arg.trim() === '' ? 'Missing argument.' : spec.arg === 'none' && arg.trim() !== '' ? 'No argument allowed.' : null;
    if (badArgument !== null) {
      // Found by a review: RETR with no argument left a REST offset for the STOR after it.
      if (spec.data) this.endDataCommand();
      this.reply(Code.ArgumentError, badArgument);
      return;
    }
    // Only a few commands make sense while data flows; the rest wait for the transfer to end.
    if (this.transfer && !spec.duringTransfer) {
      await this.transferEnded();
      // The transfer ended because the connection closed (its close aborts it): nobody is left to answer,
      // and what the command would open, nothing would close (found by a review: a PASV sent behind a
      // download, then the client's close, left a passive port listening on every address until dataTimeout).
      if (this.closed) return;
      this.active();
    }
    try {
      if (spec.auth) await spec.run(this, arg, session as Session);
      else await spec.run(this, arg);
    } catch (err) {
      if (err instanceof SluiceError) {
        const r = errorReply(err);
        this.reply(r.code, r.text);
        return;
      }
      this.log.error({ err, verb }, 'command failed');
      this.reply(Code.LocalError, 'Local error in processing.');
    } finally {
      if (spec.data) this.endDataCommand();
      // The client waited for this reply (a HASH may take minutes): idleness counts from it.
      this.active();
    }
  }

  /**
   * A data command, run or refused, leaves no REST offset and no data
   * endpoint behind (a transfer took its own), as vsftpd ends its PASV and
   * PORT state with every one: found by a review, a STOR refused after its
   * client had connected and sent left that connection, bytes and all, to the
   * STOU after it, which stored them under its own name.
   */
  private endDataCommand(): void {
    this.takeRestOffset();
    if (this.endpoint) this.setEndpoint(null);
  }

  /**
   * No command for idleTimeout: the connection ends, unless a transfer ran
   * on meanwhile. One whose data connection has moved no byte since the last
   * look ends it too: a client that never reads its download or sends the
   * rest of its upload would otherwise hold its session, descriptors and
   * quota reservation for ever (found by a review). A data connection being
   * opened or closed is left to dataTimeout. A checksum under way (HASH) is
   * no idleness (Session.hashing); its answer starts the timer again.
   */
  private onIdle(): void {
    if (this.session?.hashing) return void this.idle.refresh();
    const transfer = this.transfer;
    if (transfer) {
      const bytes = transfer.moved();
      if (bytes === null || this.idleMark?.transfer !== transfer || this.idleMark.bytes !== bytes) {
        this.idleMark = bytes === null ? null : { transfer, bytes };
        this.idle.refresh();
        return;
      }
      this.log.info({ bytes }, 'transfer stalled');
    }
    this.reply(Code.ServiceUnavailable, 'Timeout.');
    void this.close('idle timeout');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(reason: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Its data connections held to end cleanly (and those its end dismisses) get a short grace, not their deadlines.
    this.closingData.end();
    clearTimeout(this.idle);
    this.log.debug({ reason }, 'closing');
    this.transfer?.abort();
    await this.transfer?.done.catch(() => undefined);
    this.setEndpoint(null);
    this.passivePlace.end();
    // After the transfer and the passive port have ended: what they refused last is in the count.
    this.refusals.close();
    await this.session?.close().catch((err: unknown) => this.log.error({ err }, 'session close failed'));
    this.session = null;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), GOODBYE_MS).unref();
    this.release();
  }

  /** Close after the reply went out (QUIT, too many failures). */
  async closeAfterReply(code: number, text: string): Promise<void> {
    this.reply(code, text);
    await this.close('quit');
  }

  async endByServer(reason: string, afterReply: boolean): Promise<void> {
    // The transfer has ended in the shared layer; its 226 goes out once the data connection is closed.
    if (afterReply) await this.transfer?.done.catch(() => undefined);
    // Ended meanwhile (the drain's deadline while this waited): said once.
    if (this.closed) return;
    this.log.info({ reason }, 'session ended by the server');
    // The reason is the operator's text, not the client's: still kept to one printable line.
    await this.closeAfterReply(Code.ServiceUnavailable, `Session ended: ${reason.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200)}.`);
  }
}
