import type { Actor, AuditEvent } from '../audit/events.js';
import type { Account, Protocol } from '../session/account.js';
import { toSluiceError } from '../session/errors.js';
import type { DataPlace } from '../session/data-places.js';
import type { DrainCounts, LiveSessionInfo, LiveSessionsView, UserChangeCounts } from '../session/live.js';
import type { LedgerHandle, QuotaBook } from '../session/quota.js';
import type { TurnQueue } from '../session/turns.js';
import type { AuditTrail, Release } from './coordinator.js';
import type { LocalCoordinator } from './local.js';
import type {
  Answer, LedgerNote, LedgerOpened, LedgerQuestion, PrimaryMessage, Question, SessionsAnswer, SessionsQuestion, SingleWorkerMessage, TurnQueueName, WorkerMessage,
} from './ipc-messages.js';

/**
 * How long the primary waits for a worker's answer about its sessions. A
 * worker that has not answered by then (stuck, or dying) is left out: the
 * list has none of its sessions, an end counts none there. Its answer, if
 * it comes later, is dropped; an end it received still happens.
 */
export const SESSIONS_ANSWER_MS = 2000;

/** A transfer a worker has started and not yet recorded. */
interface OpenTransfer {
  actor: Actor;
  direction: 'upload' | 'download';
  path: string;
  offset: number;
  started: string;
}

/** A session a worker recorded logging in and not yet out. */
interface OpenSession {
  actor: Actor;
  since: number;
}

/**
 * The primary's side of one worker: answers its questions from the primary's
 * coordinator and remembers everything the worker holds (connection and
 * session slots, ledger handles, transfers in flight, logged-in sessions),
 * so that when the worker dies, `workerGone` gives it all back and records
 * its transfers as aborted and its sessions as logged out: who transferred
 * what stays provable when the process that served it is gone.
 */
export class WorkerLink {
  private nextId = 1;
  /**
   * What the worker holds by number: connection slots and logged-in sessions (their user), its part of the
   * session registry, its sessions' places of data connections, and its turns (uploads at the scanner, logins judged, keeps).
   */
  private readonly slots = new Map<number, { release: Release; holds: Holds }>();
  /** The data places among the slots, by slot: their `idle` and `busy` are said by the worker. */
  private readonly places = new Map<number, DataPlace>();
  /** Turns the worker waits for, by question: a cancel (or its exit) gives the wait up. */
  private readonly turnWaits = new Map<number, AbortController>();
  private readonly handles = new Map<number, LedgerHandle>();
  /**
   * Transfers in flight, by session, path of the open and start (to the millisecond), none of which a rename changes:
   * several may share one, as an SFTP client's parallel OPENs of one file
   * arriving in one read do, and each is ended by a record of its own.
   */
  private readonly transfers = new Map<string, OpenTransfer[]>();
  /** By session id, from the worker's login and logout records. */
  private readonly loggedIn = new Map<string, OpenSession>();
  /** Sessions open on this worker by protocol, as its metric events said: closed for it if it dies. */
  private readonly openSessions = new Map<Protocol, number>();
  /** Session questions sent and not yet answered: what to do with the answer. */
  private readonly asked = new Map<number, (answer: SessionsAnswer | null) => void>();
  /** The worker has exited (workerGone). */
  private gone = false;
  /** What the worker's drain did, from its `stopped`. */
  drained: DrainCounts | null = null;
  /** This worker's logged-in sessions, asked over IPC (see SESSIONS_ANSWER_MS). */
  readonly sessions: LiveSessionsView = {
    list: async () => ((await this.askSessions({ op: 'list' })) as LiveSessionInfo[] | null) ?? [],
    end: async (session, reason) => (await this.askSessions({ op: 'end', session, reason })) === true,
    endUser: async (user, reason) => ((await this.askSessions({ op: 'end-user', user, reason })) as number | null) ?? 0,
    userChanged: async (userId) => ((await this.askSessions({ op: 'user-changed', userId })) as UserChangeCounts | null) ?? { renewed: 0, ended: 0 },
  };

  constructor(
    readonly worker: number,
    private readonly coordinator: LocalCoordinator,
    private readonly quotas: QuotaBook,
    private readonly send: (m: PrimaryMessage) => void,
  ) {}

  /** Connections open on this worker, and the users logged in on it (one entry per session). */
  get live(): { connections: number; users: string[] } {
    const held = [...this.slots.values()].map((s) => s.holds);
    return { connections: held.filter((h) => h === 'connection').length, users: held.flatMap((h) => (typeof h === 'object' ? [h.user] : [])) };
  }

  handle(m: WorkerMessage): void {
    if (m.t === 'batch') this.handleEach(m.messages);
    else this.handleOne(m);
  }

  /** Each in turn, whatever one of them throws: the others were said as much as if sent alone. */
  private handleEach(messages: SingleWorkerMessage[]): void {
    const failed: unknown[] = [];
    for (const one of messages) {
      try {
        this.handleOne(one);
      } catch (err) {
        failed.push(err);
      }
    }
    if (failed.length === 1) throw failed[0];
    if (failed.length > 1) throw new AggregateError(failed, `${failed.length} messages of a batch failed`);
  }

  private handleOne(m: SingleWorkerMessage): void {
    switch (m.t) {
      case 'ask':
        void this.answer(m.id, m);
        return;
      case 'release':
        this.slots.get(m.slot)?.release();
        this.slots.delete(m.slot);
        this.places.delete(m.slot);
        return;
      case 'place':
        this.places.get(m.slot)?.[m.state]();
        return;
      case 'cancel':
        this.turnWaits.get(m.id)?.abort(new Error('given up by the worker'));
        return;
      case 'ledger-note':
        this.note(m.handle, m);
        return;
      case 'audit':
        this.opened(m.actor, m.event);
        this.coordinator.audit?.record(m.actor, m.event);
        return;
      case 'system':
        this.coordinator.audit?.system(m.event);
        return;
      case 'metric':
        if (m.event.m === 'session') this.openSessions.set(m.event.protocol, (this.openSessions.get(m.event.protocol) ?? 0) + m.event.change);
        this.coordinator.metrics.count(m.event);
        return;
      case 'process-sample':
        this.coordinator.metrics.sampled(String(this.worker), m.sample);
        return;
      case 'transfer-open':
        this.transferOpened({ actor: m.actor, direction: m.direction, path: m.path, offset: m.offset, started: m.started });
        return;
      case 'sessions-answer':
        this.asked.get(m.id)?.(m.value);
        return;
      case 'stopped':
        this.drained = m.drained ?? null;
        return;
      // The supervisor's own (cluster/primary.ts).
      case 'starting':
      case 'ready':
      case 'pong':
        return;
    }
  }

  private transferOpened(t: OpenTransfer): void {
    const key = transferKey(t.actor, t.path, t.started);
    const same = this.transfers.get(key);
    if (same) same.push(t);
    else this.transfers.set(key, [t]);
  }

  /** One transfer of `key` going `direction` from `offset` has its record: the others of that key are still in flight. */
  private transferEnded(key: string, direction: 'upload' | 'download', offset: number): void {
    const same = this.transfers.get(key);
    if (!same) return;
    // The one from that offset, so that a survivor's aborted record says where it started; else any of them.
    let i = same.findIndex((t) => t.direction === direction && t.offset === offset);
    if (i < 0) i = same.findIndex((t) => t.direction === direction);
    if (i >= 0) same.splice(i, 1);
    if (same.length === 0) this.transfers.delete(key);
  }

  /**
   * What a record of the worker's closes or opens: a transfer it ends, a session it logs in or out.
   * A transfer is found by the path of its open (its `transfer-open`'s): an upload whose directory was
   * renamed meanwhile is recorded where it ended, with `path_at_open` beside it. Found by a review: matched
   * by `path`, such an entry stayed for the worker's lifetime (memory any user with rename could grow) and
   * its exit recorded the upload aborted beside its real record.
   */
  private opened(actor: Actor, event: AuditEvent): void {
    if (event.event === 'upload' || event.event === 'download') {
      this.transferEnded(transferKey(actor, event.path_at_open ?? event.path, event.started), event.event, event.offset);
    }
    else if (event.event === 'login' && actor.session) this.loggedIn.set(actor.session, { actor, since: Date.now() });
    else if (event.event === 'logout' && actor.session) this.loggedIn.delete(actor.session);
  }

  /**
   * The worker has exited. Its sockets died with it: their slots are free, its
   * sessions' reservations go back to the ledgers, and each upload it had not
   * finished is recorded as aborted. An atomic upload's temporary stays
   * hidden until the next start's sweep; the final name was never touched.
   */
  workerGone(reason: string, audit: AuditTrail | null): void {
    this.gone = true;
    for (const s of this.slots.values()) s.release();
    this.slots.clear();
    this.places.clear();
    for (const w of this.turnWaits.values()) w.abort(new Error(reason));
    for (const h of this.handles.values()) h.release();
    this.handles.clear();
    for (const same of this.transfers.values()) for (const t of same) audit?.record(t.actor, abortedTransfer(t, reason));
    this.transfers.clear();
    for (const s of this.loggedIn.values()) audit?.record(s.actor, { event: 'logout', duration_ms: Date.now() - s.since, reason });
    this.loggedIn.clear();
    const { metrics } = this.coordinator;
    for (const [protocol, open] of this.openSessions) for (let i = 0; i < open; i++) metrics.count({ m: 'session', protocol, change: -1 });
    this.openSessions.clear();
    metrics.workerGone(String(this.worker));
    for (const answered of this.asked.values()) answered(null);
  }

  /** The worker's answer, or null when it gives none in time (or is gone). */
  private askSessions(q: SessionsQuestion): Promise<SessionsAnswer | null> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => answered(null), SESSIONS_ANSWER_MS);
      const answered = (answer: SessionsAnswer | null) => {
        clearTimeout(timer);
        this.asked.delete(id);
        resolve(answer);
      };
      this.asked.set(id, answered);
      this.send({ t: 'sessions', id, ...q });
    });
  }

  private async answer(id: number, q: Question): Promise<void> {
    try {
      this.send({ t: 'answer', id, value: await this.ask(id, q) });
    } catch (err) {
      const e = toSluiceError(err);
      this.send({ t: 'error', id, kind: e.kind, message: e.message });
    }
  }

  private async ask(id: number, q: Question): Promise<Answer> {
    switch (q.op) {
      case 'admit':
      {
        const admitted = await this.coordinator.admit(q.ip);
        return admitted === 'banned' ? admitted : this.keep(admitted, 'connection');
      }
      case 'held-ban':
        return this.coordinator.heldBan(q.source);
      case 'claim-user':
        return this.keep(await this.coordinator.claimUser(q.user, q.max, q.from), { user: q.user });
      case 'data-place': {
        const place = await this.coordinator.dataPlace(q.source, q.user);
        if (typeof place === 'string') return place;
        const slot = this.keep(place.release, 'data place');
        if (slot !== null) this.places.set(slot, place);
        return slot;
      }
      case 'score':
        return this.coordinator.score(q.ip, q.protocol, q.offence);
      case 'turn':
        return this.keep(await this.turn(id, q.queue, q.who), 'turn');
      case 'ledger': {
        const id = this.nextId++;
        const account = { ...q.account, name: '', home: '', rateUp: null, rateDown: null, scan: null, requireTls: false, permissions: { root: new Set(), dirs: new Map() }, readAt: 0, method: 'password', key: null, passwordMark: null } satisfies Account;
        const handle = await this.quotas.handle(account, () => this.send({ t: 'ledger-limited', handle: id }));
        // The worker died while the ledger opened: nothing will release it but this.
        if (this.gone) handle.release();
        else this.handles.set(id, handle);
        // Read as the answer is serialized, in its place among the messages to the worker: a quota a
        // login brought before it is in the answer, one after it comes as ledger-limited after it
        // (which the worker takes even when both arrive in one read: see RemoteCoordinator.ledger).
        return { handle: id, get unlimited() { return handle.unlimited; } } satisfies LedgerOpened;
      }
      case 'ledger-ask':
        return this.ledgerAsk(this.ledger(q.handle), q);
    }
  }

  private ledger(handle: number): LedgerHandle {
    const h = this.handles.get(handle);
    if (!h) throw new Error(`worker ${this.worker}: no ledger handle ${handle}`);
    return h;
  }

  private ledgerAsk(h: LedgerHandle, q: LedgerQuestion): Promise<Answer> | Answer {
    switch (q.method) {
      case 'checkStart':
        return h.checkStart(...q.args);
      case 'holdFile':
        return h.holdFile();
      case 'reserve':
        return h.reserve(...q.args);
      case 'lockInPlace':
        return h.lockInPlace(...q.args);
      case 'lockNames':
        return h.lockNames(...q.args);
      case 'checkCommit':
        return h.checkCommit(...q.args);
      case 'usage':
        return h.usage();
      case 'synced':
        return h.synced();
    }
  }

  private note(handle: number, n: LedgerNote): void {
    const h = this.handles.get(handle);
    if (!h) return;
    switch (n.method) {
      case 'checkStart':
      case 'holdFile':
      case 'reserve':
        return h.said(n);
      case 'releaseFile':
        return h.releaseFile();
      case 'unclaim':
        return h.unclaim(...n.args);
      case 'unlockInPlace':
        return h.unlockInPlace(...n.args);
      case 'settle':
        return h.settle(...n.args);
      case 'reading':
        return h.reading(...n.args);
      case 'doneReading':
        return h.doneReading(...n.args);
      case 'freed':
        return h.freed(...n.args);
      case 'heldGone':
        return h.heldGone(...n.args);
      case 'release':
        h.release();
        this.handles.delete(handle);
        return;
    }
  }

  /** A turn in `queue` for the worker's question `id`, waited for until the worker gives it up or exits. */
  private async turn(id: number, queue: TurnQueueName, who: string): Promise<Release> {
    const wait = new AbortController();
    this.turnWaits.set(id, wait);
    try {
      return await this.queue(queue).take(who, wait.signal);
    } finally {
      this.turnWaits.delete(id);
    }
  }

  private queue(name: TurnQueueName): TurnQueue {
    switch (name) {
      case 'scan':
        return this.coordinator.scanTurns;
      case 'judge':
        return this.coordinator.judgeTurns;
      case 'keep':
        return this.coordinator.keepTurns;
    }
  }

  private keep(release: Release | null, holds: Holds): number | null {
    if (!release) return null;
    // The worker died while the coordinator answered: nothing would ever release it but this.
    if (this.gone) {
      release();
      return null;
    }
    const slot = this.nextId++;
    this.slots.set(slot, { release, holds });
    return slot;
  }
}

/**
 * What a worker's slot holds: a connection, a user's logged-in session, a place of a data connection (a
 * passive port), a turn (at the scanner, to be judged, to keep).
 */
type Holds = 'connection' | { user: string } | 'data place' | 'turn';

function transferKey(actor: Actor, path: string, started: string): string {
  return `${actor.session}\0${path}\0${started}`;
}

function abortedTransfer(u: OpenTransfer, reason: string): AuditEvent {
  return {
    event: u.direction,
    path: u.path,
    // What reached the file before the worker died is not known here; the sweep at the next start recounts the home.
    bytes: 0,
    size: 0,
    offset: u.offset,
    resumed: u.offset > 0,
    started: u.started,
    duration_ms: Date.now() - Date.parse(u.started),
    result: 'aborted',
    reason,
    sha256: null,
    type: 'binary',
  };
}
