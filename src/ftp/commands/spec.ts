import type { Session } from '../../session/session.js';
import type { FtpConnection } from '../connection.js';

interface Common {
  /** Whether the verb takes an argument. */
  readonly arg: 'none' | 'optional' | 'required';
  /** May run while a data transfer is in progress (ABOR, STAT, NOOP, QUIT). */
  readonly duringTransfer?: boolean;
}

/** A command usable before login (vsftpd's prelogin set). */
export interface PreLoginCommand extends Common {
  readonly auth: false;
  run(c: FtpConnection, arg: string): Promise<void> | void;
}

/** A command that needs a logged-in session; the dispatcher hands it over. */
export interface SessionCommand extends Common {
  readonly auth: true;
  run(c: FtpConnection, arg: string, s: Session): Promise<void> | void;
}

export type CommandSpec = PreLoginCommand | SessionCommand;
