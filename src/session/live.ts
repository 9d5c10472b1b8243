import type { Protocol } from './account.js';

/** A transfer in progress, as an operator sees it. */
export interface LiveTransfer {
  readonly direction: 'upload' | 'download';
  /** Virtual path, as the user sees it. */
  readonly path: string;
  /** Bytes moved so far. */
  readonly bytes: number;
  /** ISO 8601. */
  readonly started: string;
}

/** One logged-in session, as an operator sees it. */
export interface LiveSessionInfo {
  /** The connection id the audit records carry. */
  readonly id: string;
  readonly user: string;
  readonly protocol: Protocol;
  readonly ip: string;
  readonly port: number;
  /** The worker serving it; 0 when one process serves everything. */
  readonly worker: number;
  /** ISO 8601: when the session logged in. */
  readonly since: string;
  readonly transfers: readonly LiveTransfer[];
}

/**
 * The logged-in sessions of the whole server, wherever they run: what the
 * admin API lists and ends. Ending a session closes its connection; its
 * unfinished uploads are recorded aborted, as when the client goes away.
 */
export interface LiveSessionsView {
  list(): Promise<LiveSessionInfo[]>;
  /** False: no such session (any more). */
  end(id: string, reason: string): Promise<boolean>;
  /** Ends every session of `user` (its stored name); how many were ended. */
  endUser(user: string, reason: string): Promise<number>;
}
