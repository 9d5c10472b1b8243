import type { Logger } from 'pino';
import type { RefusalLog } from '../security/refusals.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { Config } from '../config/schema.js';
import type { Coordinator } from '../coordinator/coordinator.js';
import type { Guest } from '../security/gate.js';
import type { Session, SessionDeps } from '../session/session.js';
import type { DataEndpoint } from './data-channel/channel.js';
import type { ClosingCount, ClosingData } from './data-channel/closing.js';
import type { PassivePlace } from './data-channel/place.js';
import type { Fact } from './facts.js';
import type { TlsBinding, TlsEngine } from './tls.js';

/*
 * The contract between a control connection and the commands it runs. The
 * connection implements FtpControl and is handed a CommandTable by the
 * listener; commands see only this interface. This file imports nothing from
 * commands/ or connection.ts, so no import circle runs through it.
 */

/** What every connection of the FTP front-end shares. */
export interface FtpContext {
  readonly config: Config['ftp'];
  readonly tls: TlsEngine;
  /** A session's place among its address's and its user's passive ports (PassivePlace). */
  readonly dataPlace: Coordinator['dataPlace'];
  /** Data connections held open to end cleanly, every control connection's together (ClosingData). */
  readonly closingData: ClosingCount;
  readonly authenticator: Authenticator;
  readonly sessionDeps: SessionDeps;
  readonly log: Logger;
}

/** A running data transfer; ABOR and QUIT reach it through here. */
export interface ActiveTransfer {
  readonly done: Promise<void>;
  abort(): void;
  /** Bytes of the file so far (STAT). */
  readonly bytes: () => number;
  /**
   * Bytes the data connection has carried either way so far, listings
   * included; null while it is being opened or closed, which dataTimeout
   * bounds on its own.
   */
  readonly moved: () => number | null;
}

/** One control connection as its commands see it: state they read and set, and what they may ask of it. */
export interface FtpControl {
  readonly id: string;
  readonly ctx: FtpContext;
  readonly log: Logger;
  /** What the client is refused at will (PORT targets, passive shares, data connections): a few logged, then counted. */
  readonly refusals: RefusalLog;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The local address clients reached us at (PASV replies, passive listeners). */
  readonly localAddress: string;
  readonly protocol: 'ftp' | 'ftps';
  readonly implicitTls: boolean;
  /** Admission and login policy: the pre-login deadline, failed tries, the per-user limit. */
  readonly guest: Guest;
  /** The connection has closed (its close has run): a session opened now would have nobody to close it. */
  readonly isClosed: boolean;
  /** This connection's own TLS sessions: its data connections must resume one of them. */
  readonly tlsBinding: TlsBinding;
  /** Its place among the passive ports of its address and user, kept a while for the next PASV/EPSV. */
  readonly passivePlace: PassivePlace;
  /** Its data connections held open a while to end cleanly (a dismissed one's TLS handshake, a refused upload's drain). */
  readonly closingData: ClosingData;
  /** Every verb this connection answers; FEAT and HELP are derived from it. */
  readonly commands: CommandTable;
  readonly secure: boolean;
  pbsz: boolean;
  /** Data channel protection: C clear, P private (TLS). */
  prot: 'C' | 'P';
  ascii: boolean;
  userName: string | null;
  session: Session | null;
  restOffset: number;
  renameFrom: string | null;
  epsvAll: boolean;
  /** The facts MLST and MLSD emit (OPTS MLST, RFC 3659 7.9). */
  mlstFacts: ReadonlySet<Fact>;
  endpoint: DataEndpoint | null;
  transfer: ActiveTransfer | null;

  reply(code: number, ...lines: string[]): void;
  /** A multi-line reply whose lines come one at a time, sent only as fast as the client takes it. */
  streamReply(code: number, lines: AsyncIterable<string>): Promise<void>;
  /** Take the REST offset for this transfer; it applies once. */
  takeRestOffset(): number;
  /** Replace the data endpoint, closing the previous one. */
  setEndpoint(endpoint: DataEndpoint | null): void;
  /** Log out but keep the connection (REIN, AUTH): the next USER starts afresh. */
  logout(): Promise<void>;
  /** AUTH TLS: switch the control connection to TLS and start over at login. */
  upgradeToTls(): Promise<void>;
  /** Close after the reply went out (QUIT, too many failures). */
  closeAfterReply(code: number, text: string): Promise<void>;
  /**
   * Waits for the running transfer (if any) to end, reading the lines the
   * client sends meanwhile: an ABOR among them aborts it (RFC 959 4.1.3),
   * and the rest run in order after the command that waited.
   */
  transferEnded(): Promise<void>;
  /** ABOR's work: abort `transfer` (its own reply, 426, goes first), then answer the ABOR once it has ended. */
  abortTransfer(transfer: ActiveTransfer): Promise<void>;
  /** The server ends the session (LiveConnection.end): 421, then close. */
  endByServer(reason: string, afterReply: boolean): Promise<void>;
}

interface Common {
  /** Whether the verb takes an argument. */
  readonly arg: 'none' | 'optional' | 'required';
  /** May run while a data transfer is in progress (ABOR, STAT, NOOP, QUIT). */
  readonly duringTransfer?: boolean;
  /**
   * Moves data on a data connection (RETR, STOR, LIST...): it takes the REST
   * offset, run or refused (see startDataCommand), so that no later transfer
   * gets it.
   */
  readonly data?: true;
  /** Its FEAT line (RFC 2389), if it is an extension; a function where the line depends on the connection. */
  readonly feat?: string | ((c: FtpControl) => string);
  /** Syntax for `HELP verb`. */
  readonly help: string;
}

/** A command usable before login (vsftpd's prelogin set). */
export interface PreLoginCommand extends Common {
  readonly auth: false;
  run(c: FtpControl, arg: string): Promise<void> | void;
}

/** A command that needs a logged-in session; the dispatcher hands it over. */
export interface SessionCommand extends Common {
  readonly auth: true;
  run(c: FtpControl, arg: string, s: Session): Promise<void> | void;
}

export type CommandSpec = PreLoginCommand | SessionCommand;

/** Verb (upper case) -> command. */
export type CommandTable = Readonly<Record<string, CommandSpec>>;
