import type { Actor, AuditEvent, SystemEvent } from '../audit/events.js';
import type { MetricsSink } from '../metrics/events.js';
import type { Account, Protocol } from '../session/account.js';
import type { DataPlace, DataPlaceRefusal } from '../session/data-places.js';
import { SluiceError } from '../session/errors.js';
import type { LiveSessionsView } from '../session/live.js';
import type { Ledger, Ledgers, NamesLock } from '../session/quota.js';
import type { InFlightTransfers } from '../session/session.js';
import type { TurnQueue } from '../session/turns.js';
import type { AuditTrail, Coordinator, Offence, Release, SourceShare } from './coordinator.js';
import {
  isMessage, type Answer, type LedgerNote, type LedgerOpened, type LedgerQuestion, type PrimaryMessage, type Question, type SessionsAnswer, type SessionsQuestion,
  type SingleWorkerMessage, type TurnQueueName, type WorkerMessage,
} from './ipc-messages.js';

/** How long a message that only counts may wait for another to go with (RemoteCoordinator). */
const LINGER_MS = 10;

/** How a worker talks to the primary: Node's IPC channel (process.send), in order. */
export interface Channel {
  send(message: WorkerMessage): void;
  onMessage(listener: (message: PrimaryMessage) => void): void;
}

/** The worker's side of the IPC channel the cluster module opened. */
export function processChannel(): Channel {
  return {
    send: (message) => {
      // Closed: the worker is stopping, and the primary reads nothing more from it.
      if (process.connected) process.send?.(message);
    },
    onMessage: (listener) =>
      process.on('message', (m: unknown) => {
        if (isMessage<PrimaryMessage>(m)) listener(m);
      }),
  };
}

/**
 * A worker's coordinator: every question goes to the primary, which keeps the
 * one state of the whole server (see Coordinator). Slots and ledger handles
 * are numbers the primary gave; giving them back is a message, not a wait.
 *
 * What needs no answer (audit records, ledger notes, released slots) waits
 * for the end of the current tick and goes with whatever else was said in it
 * as one message: an upload's end (its ledger notes and its record) costs one
 * write, not three. A question takes what is waiting along at once, so the
 * primary still sees everything in the order it was said.
 *
 * What only counts (metrics, and the steps of a ledger without a quota, which
 * no check can refuse) may wait longer, up to LINGER_MS, for the next message
 * to ride with: a small upload's start and its first write then cost no write
 * of their own, and the primary wakes half as often per file. Nothing that
 * proves or limits waits longer than the tick: audit records, an upload's
 * start, released slots and every step of a limited ledger still go at its
 * end, and take what lingers along. flushNow() sends everything before the
 * worker's `stopped`.
 */
export class RemoteCoordinator implements Coordinator, InFlightTransfers {
  private next = 1;
  private pending: SingleWorkerMessage[] = [];
  private readonly waiting = new Map<number, { resolve: (v: Answer) => void; reject: (e: Error) => void; arrived?: (v: Answer) => void }>();
  /** Open ledger handles that say their steps (no quota when opened): told here when the ledger gets one. */
  private readonly unlimited = new Map<number, () => void>();
  readonly ledgers: Ledgers;
  readonly scanTurns: TurnQueue = this.turns('scan');
  readonly judgeTurns: TurnQueue = this.turns('judge');
  readonly keepTurns: TurnQueue = this.turns('keep');
  readonly audit: AuditTrail | null;
  /** Counts go to the primary with the next message said: they are never what wakes it. */
  readonly metrics: MetricsSink = { count: (event) => this.linger({ t: 'metric', event }) };
  /** A flush is queued for the end of this tick (post). */
  private flushing = false;
  /** What only counts is waiting, at most until this timer (linger). */
  private lingering: NodeJS.Timeout | null = null;

  constructor(
    private readonly channel: Channel,
    auditEnabled: boolean,
  ) {
    channel.onMessage((m) => this.answered(m));
    this.ledgers = { acquire: (account) => this.ledger(account) };
    this.audit = auditEnabled
      ? {
          record: (actor: Actor, event: AuditEvent) => this.post({ t: 'audit', actor, event }),
          system: (event: SystemEvent) => this.post({ t: 'system', event }),
        }
      : null;
  }

  async admit(ip: string): Promise<Release | 'banned' | null> {
    const answer = await this.ask({ op: 'admit', ip });
    return answer === 'banned' ? answer : this.slot(answer);
  }

  async heldBan(source: string): Promise<boolean> {
    return (await this.ask({ op: 'held-ban', source })) === true;
  }

  async claimUser(user: string, max?: number, from?: SourceShare): Promise<Release | null> {
    return this.slot(await this.ask({ op: 'claim-user', user, ...(max === undefined ? {} : { max }), ...(from === undefined ? {} : { from }) }));
  }

  async dataPlace(source: string, user: string): Promise<DataPlace | DataPlaceRefusal> {
    const answer = await this.ask({ op: 'data-place', source, user });
    if (answer === 'address' || answer === 'user') return answer;
    const release = this.slot(answer);
    if (!release) throw new Error(`no answer for a data place of ${user}`);
    const slot = answer as number;
    return {
      idle: () => this.post({ t: 'place', slot, state: 'idle' }),
      busy: () => this.post({ t: 'place', slot, state: 'busy' }),
      release,
    };
  }

  async score(ip: string, protocol: Protocol, offence: Offence): Promise<boolean> {
    return (await this.ask({ op: 'score', ip, protocol, offence })) === true;
  }

  /** The primary's queue `queue`: a wait there, which `signal` gives up there too (cancel). */
  private turns(queue: TurnQueueName): TurnQueue {
    return {
      take: async (who, signal) => {
        signal.throwIfAborted();
        const turn = this.slot(await this.ask({ op: 'turn', queue, who }, { signal }));
        if (!turn) throw new Error(`no ${queue} turn for ${who}`);
        return turn;
      },
    };
  }

  started(actor: Actor, direction: 'upload' | 'download', path: string, offset: number, started: Date): void {
    if (this.audit) this.post({ t: 'transfer-open', actor, direction, path, offset, started: started.toISOString() });
  }

  private slot(answer: Answer): Release | null {
    if (typeof answer !== 'number') return null;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.post({ t: 'release', slot: answer });
    };
  }

  private async ledger(account: Account): Promise<Ledger> {
    const { id, quotaBytes, quotaFiles } = account;
    let unlimited = false;
    // Registered as the answer arrives, not when this function resumes: a ledger-limited that came
    // in the same read of the channel is handled before any promise continuation runs.
    const arrived = (answer: Answer) => {
      const opened = answer as LedgerOpened;
      if (!opened.unlimited) return;
      unlimited = true;
      this.unlimited.set(opened.handle, () => (unlimited = false));
    };
    const { handle } = (await this.ask({ op: 'ledger', account: { id, quotaBytes, quotaFiles, revision: account.revision } }, { arrived })) as LedgerOpened;
    const ask = (q: LedgerQuestion) => this.ask({ op: 'ledger-ask', handle, ...q });
    // A ledger without a quota only counts; a limited one's notes give back room another upload may wait for.
    const note = (n: LedgerNote) => {
      const message: SingleWorkerMessage = { t: 'ledger-note', handle, ...n };
      if (unlimited) this.linger(message);
      else this.post(message);
    };
    let released = false;
    // Without a quota no check can fail: what they take is said with the tick's other messages, and a
    // small upload waits for no round trip to the primary (claims and in-place locks still ask).
    return {
      get unlimited() {
        return unlimited;
      },
      checkStart: async (start) => {
        if (!unlimited || start.claim !== null || start.lock !== null) return (await ask({ method: 'checkStart', args: [start] })) === true;
        note({ method: 'checkStart', args: [start] });
        return false;
      },
      holdFile: async () => (unlimited ? note({ method: 'holdFile', args: [] }) : void (await ask({ method: 'holdFile', args: [] }))),
      reserve: async (bytes, credit) =>
        unlimited ? note({ method: 'reserve', args: [bytes, credit] }) : void (await ask({ method: 'reserve', args: [bytes, credit] })),
      lockInPlace: async (key) => void (await ask({ method: 'lockInPlace', args: [key] })),
      lockNames: async (key, among) => (await ask({ method: 'lockNames', args: among === undefined ? [key] : [key, among] })) as NamesLock,
      checkCommit: async (...args) => (unlimited ? undefined : void (await ask({ method: 'checkCommit', args }))),
      usage: async () => (await ask({ method: 'usage', args: [] })) as { bytes: number; files: number },
      synced: async () => void (await ask({ method: 'synced', args: [] })),
      releaseFile: () => note({ method: 'releaseFile', args: [] }),
      unclaim: (key) => note({ method: 'unclaim', args: [key] }),
      unlockInPlace: (key) => note({ method: 'unlockInPlace', args: [key] }),
      settle: (...args) => note({ method: 'settle', args }),
      reading: (key) => note({ method: 'reading', args: [key] }),
      doneReading: (key) => note({ method: 'doneReading', args: [key] }),
      freed: (...args) => note({ method: 'freed', args }),
      heldGone: (...args) => note({ method: 'heldGone', args }),
      release: () => {
        if (released) return;
        released = true;
        this.unlimited.delete(handle);
        note({ method: 'release', args: [] });
      },
    };
  }

  /**
   * `arrived`: called with the answer the moment it is read, before the promise resolves. `signal`: the
   * question is given up when it aborts: the promise rejects with its reason, the primary is told
   * (cancel), and a slot its answer brings all the same (sent before the cancel reached it) is given back.
   */
  private ask(question: Question, { arrived, signal }: { arrived?: (answer: Answer) => void; signal?: AbortSignal } = {}): Promise<Answer> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const giveUp = (): void => {
        this.waiting.set(id, { resolve: (answer) => this.slot(answer)?.(), reject: () => undefined });
        this.post({ t: 'cancel', id });
        reject(signal?.reason);
      };
      const done = (): void => signal?.removeEventListener('abort', giveUp);
      this.waiting.set(id, {
        resolve: (answer) => {
          done();
          resolve(answer);
        },
        reject: (err) => {
          done();
          reject(err);
        },
        ...(arrived ? { arrived } : {}),
      });
      signal?.addEventListener('abort', giveUp, { once: true });
      this.pending.push({ t: 'ask', id, ...question });
      this.flush();
    });
  }

  /** Said, not asked: sent with the rest of this tick's messages. */
  private post(message: SingleWorkerMessage): void {
    this.pending.push(message);
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Said, and it may wait up to LINGER_MS for other messages to go with (see the class comment). */
  private linger(message: SingleWorkerMessage): void {
    this.pending.push(message);
    this.lingering ??= setTimeout(() => this.flush(), LINGER_MS);
  }

  /** Whatever waits goes now, in order: before the worker's last message. */
  flushNow(): void {
    this.flush();
  }

  private flush(): void {
    this.flushing = false;
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = null;
    const messages = this.pending;
    if (messages.length === 0) return;
    this.pending = [];
    this.channel.send(messages.length === 1 ? (messages[0] as SingleWorkerMessage) : { t: 'batch', messages });
  }

  private answered(m: PrimaryMessage): void {
    if (m.t === 'ledger-limited') {
      this.unlimited.get(m.handle)?.();
      this.unlimited.delete(m.handle);
      return;
    }
    if (m.t !== 'answer' && m.t !== 'error') return;
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (m.t === 'answer') {
      w.arrived?.(m.value);
      w.resolve(m.value);
    }
    else w.reject(new SluiceError(m.kind, m.message));
  }
}

/** A worker's answer to the primary's question about its logged-in sessions. */
export function answerSessions(live: LiveSessionsView, q: SessionsQuestion): Promise<SessionsAnswer> {
  switch (q.op) {
    case 'list':
      return live.list();
    case 'end':
      return live.end(q.session, q.reason);
    case 'end-user':
      return live.endUser(q.user, q.reason);
    case 'user-changed':
      return live.userChanged(q.userId);
  }
}
