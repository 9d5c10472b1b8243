import type { AuditSink, Service, SystemAuditSink } from '../audit/events.js';
import type { MetricsSink } from '../metrics/events.js';
import type { Protocol } from '../session/account.js';
import type { DataPlace, DataPlaceRefusal } from '../session/data-places.js';
import type { Ledgers } from '../session/quota.js';
import type { TurnQueue } from '../session/turns.js';

/**
 * What an address is scored for. A bare connect-and-close (health checks,
 * port probes) is none of these and scores nothing.
 */
export type Offence = 'login-failed' | 'login-timeout' | 'protocol-abuse' | 'handshake-failed' | 'token-refused';

/**
 * A share of a user's sessions from one source (BanCheck.source), so one
 * client cannot take them all (anonymous FTP). Counted by the process that
 * holds the coordinator: on several nodes, each node's share.
 */
export interface SourceShare {
  readonly source: string;
  readonly max: number;
}

/** Gives back a counted place (a connection, a user's session); only the first call counts. */
export type Release = () => void;

/** Where offences are counted, from any front-end or the admin API; true when this one got the address banned. */
export interface Scorer {
  score(ip: string, protocol: Service, offence: Offence): Promise<boolean>;
  /** Is `source` under a ban the store has not taken (Defender)? Every other ban is looked up in the store. */
  holds(source: string): boolean;
}

/** Where the trail goes: session events, and the server's own. */
export type AuditTrail = AuditSink & SystemAuditSink;

/**
 * Everything that must hold for the whole server however many processes
 * serve it: connection and session limits, the places of data connections,
 * the defender's failure counts,
 * each user's quota ledger and turns at the scanner, each source's turns to
 * have a login judged, the quarantine's keeps, and the audit trail's one
 * writer. Kept in this
 * process (`LocalCoordinator`) or, with workers, in the primary, which the
 * workers ask over IPC (`ipc-client.ts`, answered by `ipc-server.ts`). Answers may take a round trip, so every
 * question is asynchronous; what needs no answer is sent and never waited on.
 */
export interface Coordinator {
  /**
   * A connection slot for `source` (BanCheck.source); null when the total or
   * the per-address limit is reached; 'banned' under a ban the store could
   * not take (Scorer.holds), which the gate's own look-up cannot see.
   */
  admit(source: string): Promise<Release | 'banned' | null>;
  /**
   * Is `source` under a ban the store could not take (Scorer.holds)? Asked
   * before a login is let in: connections admitted before such a ban cannot
   * see it in the store.
   */
  heldBan(source: string): Promise<boolean>;
  /**
   * A slot for one logged-in session of `user` (its stored name), or null at
   * the per-user limit (`max` when given), or at `from.max` of the user's
   * sessions from `from.source`.
   */
  claimUser(user: string, max?: number, from?: SourceShare): Promise<Release | null>;
  /**
   * A place of a data connection (an FTP passive port) for `source`
   * (BanCheck.source) and `user` (its stored name), or which share of them
   * is used up (DataPlaces). A round trip with workers: the session keeps
   * the place a while for its next one (ftp/data-channel/place.ts), whose
   * `idle` and `busy` are said, not asked.
   */
  dataPlace(source: string, user: string): Promise<DataPlace | DataPlaceRefusal>;
  /** Count one offence of `ip`; true when it got the address banned (on every process at once: the ban is stored). */
  score(ip: string, protocol: Protocol, offence: Offence): Promise<boolean>;
  readonly ledgers: Ledgers;
  /** Each user's (or anonymous source's) turns at the scanner (SCANS_PER_USER at once). */
  readonly scanTurns: TurnQueue;
  /** Each source's turns to have a login attempt judged (defender.threshold at once: Gate.turnToJudge). */
  readonly judgeTurns: TurnQueue;
  /** The quarantine's keeps, one at a time, each seeing the ones before it (QuarantineDir). */
  readonly keepTurns: TurnQueue;
  /** null: the audit trail is switched off. */
  readonly audit: AuditTrail | null;
  /** Counted whether the audit trail is on or off. */
  readonly metrics: MetricsSink;
}
