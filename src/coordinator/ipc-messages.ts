import type { Actor, AuditEvent, SystemEvent } from '../audit/events.js';
import type { MetricEvent, ProcessSample } from '../metrics/events.js';
import type { Protocol } from '../session/account.js';
import type { DataPlaceRefusal } from '../session/data-places.js';
import type { ErrorKind } from '../session/errors.js';
import type { FenceState } from '../session/fence.js';
import type { DrainCounts, LiveSessionInfo, UserChangeCounts } from '../session/live.js';
import type { NamesAmong, NamesLock, SaidStep, UploadStart } from '../session/quota.js';
import type { Listening } from '../listening.js';
import type { Offence, SourceShare } from './coordinator.js';

/** The coordinator's turn queues a worker waits in. */
export type TurnQueueName = 'scan' | 'judge' | 'keep';

/** What a worker's ledger asks and waits for. */
export type LedgerQuestion =
  | { method: 'checkStart'; args: [start: UploadStart] }
  | { method: 'holdFile'; args: [] }
  | { method: 'reserve'; args: [bytes: number, credit: number] }
  | { method: 'lockInPlace'; args: [key: string] }
  | { method: 'lockNames'; args: [key: string, among?: NamesAmong] }
  | { method: 'checkCommit'; args: [reserved: number, written: number, freed: number, newName: boolean] }
  | { method: 'usage'; args: [] }
  /** Answered once the notes before it are applied (they are, in order): a barrier. */
  | { method: 'synced'; args: [] };

/** What a worker's ledger says and does not wait for. */
export type LedgerNote =
  | SaidStep
  | { method: 'releaseFile'; args: [] }
  | { method: 'unclaim'; args: [key: string] }
  | { method: 'unlockInPlace'; args: [key: string] }
  | { method: 'settle'; args: [reserved: number, bytesDelta: number, filesDelta: number] }
  | { method: 'reading'; args: [key: string] }
  | { method: 'doneReading'; args: [key: string] }
  | { method: 'freed'; args: [key: string, bytes: number, names: number] }
  | { method: 'heldGone'; args: [key: string, bytes: number] }
  | { method: 'release'; args: [] };

/** The quota-relevant part of an account: what the primary's ledger needs. */
export interface LedgerAccount {
  id: number;
  quotaBytes: number;
  quotaFiles: number;
  revision: number;
}

export type Question =
  | { op: 'admit'; ip: string }
  | { op: 'held-ban'; source: string }
  | { op: 'claim-user'; user: string; max?: number; from?: SourceShare }
  | { op: 'data-place'; source: string; user: string }
  | { op: 'score'; ip: string; protocol: Protocol; offence: Offence }
  /** Answered with a slot once `who`'s turn in `queue` comes (Coordinator.scanTurns, judgeTurns, keepTurns); given up by `cancel`. */
  | { op: 'turn'; queue: TurnQueueName; who: string }
  | { op: 'ledger'; account: LedgerAccount }
  | ({ op: 'ledger-ask'; handle: number } & LedgerQuestion);

/** Worker to primary, one at a time. Messages of one worker arrive in the order sent. */
export type SingleWorkerMessage =
  | ({ t: 'ask'; id: number } & Question)
  | { t: 'release'; slot: number }
  /** A data place's port stopped listening (idle), or its session's next one listens (busy): see DataPlace. */
  | { t: 'place'; slot: number; state: 'idle' | 'busy' }
  /** The question `id` is given up (a turn's deadline): the primary stops waiting for it; a slot answered before this is given back. */
  | { t: 'cancel'; id: number }
  | ({ t: 'ledger-note'; handle: number } & LedgerNote)
  | { t: 'audit'; actor: Actor; event: AuditEvent }
  | { t: 'system'; event: SystemEvent }
  | { t: 'metric'; event: MetricEvent }
  /** The worker's own use of the machine (sent every few seconds, see metrics/sampler.ts). */
  | { t: 'process-sample'; sample: ProcessSample }
  /** An upload has started: if the worker dies before its audit record arrives, the primary records it aborted. */
  | { t: 'transfer-open'; actor: Actor; direction: 'upload' | 'download'; path: string; offset: number; started: string }
  /** About to start its front-ends, listening for `stop` already: the primary answers `start`, or `stop` once it is stopping. */
  | { t: 'starting' }
  /** The front-ends are listening. */
  | { t: 'ready'; frontEnds: string[]; listeners: Listening[] }
  /** The answer to a SessionsQuestion of the same id. */
  | { t: 'sessions-answer'; id: number; value: SessionsAnswer }
  /** The worker has stopped serving; everything it had to send was sent before this. What its drain did, if it drained. */
  | { t: 'stopped'; drained?: DrainCounts }
  /** The answers to a `ping`: from the worker's event loop, then once its thread pool ran a job (cluster/watchdog.ts). */
  | { t: 'pong'; from: 'loop' | 'pool' };

/**
 * What a worker sends: one message, or several said in one tick of its event
 * loop, sent as one (a write and a wake-up of the primary each, not several)
 * and handled in their order.
 */
export type WorkerMessage = SingleWorkerMessage | { t: 'batch'; messages: SingleWorkerMessage[] };

/** A slot (admit, claim-user, data-place, turn) or ledger handle is a number the worker gives back; null (or which share): refused. */
export type Answer = boolean | number | null | 'banned' | DataPlaceRefusal | NamesLock | { bytes: number; files: number } | LedgerOpened | void;

/** The answer to `ledger`: the handle, and whether the ledger has no quota (then its checks are said, not asked). */
export interface LedgerOpened {
  handle: number;
  unlimited: boolean;
}

/** What the primary asks a worker about its logged-in sessions (LiveSessionsView). */
export type SessionsQuestion =
  | { op: 'list' }
  | { op: 'end'; session: string; reason: string }
  | { op: 'end-user'; user: string; reason: string }
  | { op: 'user-changed'; userId: number | null };

/** list: the sessions; end: whether it was there; end-user: how many were ended; user-changed: what it did. */
export type SessionsAnswer = LiveSessionInfo[] | boolean | number | UserChangeCounts;

/** Primary to worker. */
export type PrimaryMessage =
  | { t: 'answer'; id: number; value: Answer }
  | { t: 'error'; id: number; kind: ErrorKind; message: string }
  /** Stop accepting, drain the sessions, send what is left, exit. `now`: a second signal, end the drain at once. */
  | { t: 'stop'; now?: boolean }
  /** The answer to `starting` while the server is not stopping: listen. */
  | { t: 'start' }
  | ({ t: 'sessions'; id: number } & SessionsQuestion)
  /** SIGHUP reached the primary: reload certificates and keys. */
  | { t: 'reload' }
  /** The ledger of a handle opened unlimited has got a quota (a later login's): its steps are asked from now on. */
  | { t: 'ledger-limited'; handle: number }
  /** Several nodes: the in-place fence of the node (the primary holds its lock); sent before `start` and at each change. */
  | ({ t: 'fence' } & FenceState)
  /** Is the worker alive? Answered with `pong` (cluster/watchdog.ts). */
  | { t: 'ping' };

/** One of ours (either direction): the channel also carries the cluster module's own messages. */
export function isMessage<M extends WorkerMessage | PrimaryMessage>(m: unknown): m is M {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}
