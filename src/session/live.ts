import { setTimeout as sleep } from 'node:timers/promises';
import type { Account, LoginMethod, Protocol } from './account.js';
import { SluiceError } from './errors.js';
import { listOfRules, sameRules, takesAnyAway, type PermissionList, type PermissionRules } from './permissions.js';

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
  /** The stored user's id: a user removed and made again under the same name is another user. */
  readonly userId: number;
  readonly protocol: Protocol;
  readonly ip: string;
  readonly port: number;
  /** How its login proved itself. */
  readonly method: LoginMethod;
  /** The fingerprint of the public key its login proved; null: another method. */
  readonly key: string | null;
  /**
   * The permissions it holds, as read when it opened: a change that takes one away must end it.
   * One per SFTP or SCP channel of an SSH connection, each read when the channel opened.
   */
  readonly permissions: readonly PermissionList[];
  /** The home each of those serves, as read when it opened: a change of the home must end it. */
  readonly homes: readonly string[];
  /** The revision of the user each of those read (Account.revision): one older than the store's missed a change. */
  readonly revisions: readonly number[];
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
  /**
   * A user changed in the store (null: any users, as a node's look at a
   * shared store's notices says in one message). Each process notes when it
   * was told: a login under way that read its user before checks the user
   * again as its session registers (LiveRegistry.catchUp). With an id, each
   * process also reads the user's permissions afresh, at this call, so that
   * of two changes told in either order the later one holds: each of the
   * user's sessions takes them from its next check on
   * (Session.renewPermissions), or ends if they take something from what it
   * holds, the user is gone, or they cannot be read.
   * Tell it after the change is written and before ending the sessions the
   * change ends: a login that registers between the two then still reads
   * the user again.
   */
  userChanged(userId: number | null): Promise<UserChangeCounts>;
}

/** What LiveSessionsView.userChanged did: sessions that took the new permissions, sessions ended. */
export interface UserChangeCounts {
  renewed: number;
  ended: number;
}

/** What a session of a user serves: its home, under its permissions, its uploads scanned or not. */
export interface StoredAccess {
  readonly home: string;
  readonly permissions: PermissionRules;
  readonly scan: boolean | null;
}

/** The store's users as a process reads them afresh (the Authenticator). */
export interface StoredUsers {
  /** The home, permissions and scanning of the account's user now; null when it is gone (another user may have its id or name now). */
  storedAccess(account: Pick<Account, 'id' | 'name'>): Promise<StoredAccess | null>;
  /** The account as it may open a session now, from `where`; null when it may not (removed, disabled, expired, refused by its rules). */
  refreshed(account: Account, where: { protocol: Protocol; remoteAddress: string }): Promise<Account | null>;
}

/**
 * How a front-end ends one of its connections (FTP: a 421 reply then close;
 * SFTP: close the SSH connection). The shared layer has already aborted the
 * transfers of its sessions, or waited for them, and recorded why. A
 * connection that serves several sessions at once (an SSH connection, one
 * per channel) registers each with the same LiveConnection: they end
 * together.
 */
export interface LiveConnection {
  /**
   * `afterReply`: the last transfer of its sessions has ended in the shared
   * layer but its client may still be owed the protocol's final reply (FTP
   * 226): send it first. Settles once its sessions are closed and their end
   * recorded.
   */
  end(reason: string, afterReply: boolean): Promise<void>;
}

/** What a drain did (see LiveRegistry.drain). */
export interface DrainCounts {
  /** Sessions with no transfer in progress, ended at once. */
  endedIdle: number;
  /** Transfers in progress at the stop that completed. */
  transfersFinished: number;
  /** Transfers in progress at the stop that did not: cut at the deadline, or failed on their own. */
  transfersAborted: number;
}

/** The parts of a Session the registry reads and acts on (see Session). */
export interface LiveSession {
  readonly id: string;
  readonly account: Account;
  readonly context: { readonly protocol: Protocol; readonly remoteAddress: string; readonly remotePort: number };
  readonly since: Date;
  /** Whether its uploads are scanned (Session.scans). */
  readonly scans: boolean;
  readonly inProgress: readonly LiveTransferState[];
  /** See Session.windDown. */
  windDown(reason: string, abort: boolean): Promise<void>;
  renewPermissions(rules: PermissionRules): void;
}

/** A transfer as the registry sees it (Upload, Download). */
export interface LiveTransferState {
  readonly direction: 'upload' | 'download';
  readonly path: string;
  readonly transferred: number;
  readonly started: Date;
  /** null while it runs. */
  readonly outcome: 'ok' | 'aborted' | 'failed' | null;
}

interface Entry {
  readonly session: LiveSession;
  readonly connection: LiveConnection;
}

/** A login as the registry knows it apart from its sessions (see LiveRegistry.login). */
export type LiveLogin = Pick<LiveSession, 'id' | 'account' | 'context' | 'since'>;

/** A session being opened (Session.open), from its start until it is open or has failed: see LiveRegistry.opening. */
export interface Opening {
  /** Throws once the server is stopping, or an end came for it meanwhile: it must not open. */
  check(): void;
  /** It is open (registered: add) or has failed, its session ended. */
  done(): void;
}

interface OpeningEntry {
  readonly id: string;
  readonly user: string;
  readonly userId: number;
  readonly connection: LiveConnection;
  /** Why an end refused it, once one came. */
  refused: string | null;
  /** Settles a turn of the event loop after done(): once what its failure records (the login's logout) is recorded. */
  readonly settled: Promise<void>;
}

/**
 * The logged-in sessions of this process, whatever their front-end: a
 * session is added when it opens (Session.open) and removed when it closes.
 * Ending one aborts its transfers here, so they are recorded alike for every
 * protocol, then asks its front-end to close the connection.
 */
export class LiveRegistry implements LiveSessionsView {
  private readonly entries = new Set<Entry>();
  /** The same entries by connection: the sessions of one end together (endConnection). */
  private readonly byConnection = new Map<LiveConnection, Set<Entry>>();
  /**
   * Sessions being opened: an end that concerns one refuses it and waits for
   * it. Found by a review: a login whose home was still opening was in no
   * list, so ending its user's sessions ended none and answered, and the
   * session then opened and served; a stop's drain was done before such a
   * login's logout was recorded.
   */
  private readonly openings = new Set<OpeningEntry>();
  /** Logins that outlast their sessions (see login), by their connection. */
  private readonly logins = new Map<LiveConnection, LiveLogin>();
  /** Connections the server has ended, and why: no session opens on one after that (see opening). */
  private readonly ended = new WeakMap<LiveConnection, string>();
  /** Set once the server is stopping: no session opens after that. */
  private stopping = false;
  /** Once the server is stopping: the drain's deadline, which no wait of an end outlasts. */
  private deadline: Promise<unknown> = new Promise(() => undefined);

  /** When this process was last told that a user changed (performance.now()), per user id. */
  private readonly told = new Map<number, number>();
  /** When it was last told that some user changed, unnamed. */
  private toldAny = -Infinity;
  /** When this process last ended a user's sessions (performance.now()) and why, by the user's name: see opening. */
  private readonly userEnds = new Map<string, { at: number; reason: string }>();

  constructor(
    /** The cluster worker id of this process; 0 when one process serves everything. */
    private readonly worker: number,
    private readonly users: StoredUsers,
    /** Whether a session of a user whose scanning setting is this would scan its uploads here (scansWith). */
    private readonly scansFor: (setting: boolean | null) => boolean,
  ) {}

  /** Throws once the server is stopping: a login then opens no session. */
  admit(): void {
    if (this.stopping) throw new SluiceError('failure', 'Server is shutting down');
  }

  /**
   * A session of `account` on `connection` begins to open (Session.open):
   * until its done(), an end of its id, its user or its connection refuses
   * it (its check() throws) and waits for it, and a stop's drain waits for
   * it. Throws once the server is stopping.
   */
  opening(id: string, account: Pick<Account, 'id' | 'name' | 'readAt'>, connection: LiveConnection): Opening {
    this.admit();
    let settle: () => void = () => undefined;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    // A login that read its user before an end of the user's sessions is one of them, though it had no session
    // yet: it was verifying a password the end was made to shut out (a password changed, then every session
    // ended). Found by a review: such a login opened its session after the end and went on.
    const userEnd = this.userEnds.get(account.name);
    const endedBefore = userEnd !== undefined && userEnd.at >= account.readAt ? userEnd.reason : null;
    const entry: OpeningEntry = { id, user: account.name, userId: account.id, connection, refused: this.ended.get(connection) ?? endedBefore, settled };
    this.openings.add(entry);
    return {
      check: () => {
        this.admit();
        if (entry.refused !== null) throw new SluiceError('permission-denied', 'Session ended by the server', entry.refused);
      },
      done: () => {
        // A turn later: a failed open's logout is recorded by its login (the gate), as the failure reaches it.
        if (this.openings.delete(entry)) setImmediate(settle);
      },
    };
  }

  /**
   * Refuses the sessions opening that `match` chooses, for `reason`, and
   * waits until each has failed and its end is recorded: at most
   * OPENING_WAIT_MS (one held by something outside the server, a hung file
   * system under its home, still fails when it gets on, for this reason),
   * or until the drain's deadline. Their ids.
   */
  private async refuseOpenings(match: (o: OpeningEntry) => boolean, reason: string): Promise<Set<string>> {
    const chosen = [...this.openings].filter(match);
    for (const o of chosen) o.refused ??= reason;
    await this.awaitOpenings(chosen);
    return new Set(chosen.map((o) => o.id));
  }

  private async awaitOpenings(chosen: readonly OpeningEntry[]): Promise<void> {
    if (chosen.length === 0) return;
    await Promise.race([Promise.all(chosen.map((o) => o.settled)), sleep(OPENING_WAIT_MS, undefined, { ref: false }), this.deadline]);
  }

  /** A session has logged in; the returned function removes it (when it closes). */
  add(session: LiveSession, connection: LiveConnection): () => void {
    const entry = { session, connection };
    this.entries.add(entry);
    const group = this.byConnection.get(connection) ?? new Set<Entry>();
    this.byConnection.set(connection, group.add(entry));
    return () => {
      this.entries.delete(entry);
      group.delete(entry);
      if (group.size === 0 && this.byConnection.get(connection) === group) this.byConnection.delete(connection);
    };
  }

  /**
   * A login whose connection opens its sessions after it, one or several
   * at a time, and may hold none between them (an SSH connection: each
   * channel a session), from its login until the connection closes (the
   * returned function): listed as a session without one of its own, and
   * ended as its sessions are, by its id, its user's name or (a ban) its
   * address, so that its client opens no session after that. Before (found
   * by a review), such a connection with no channel open, or none opened
   * yet, was in no list: ending the user's sessions (after a password was
   * stolen) or banning its address ended none, and it opened new SFTP
   * sessions afterwards for as long as it stayed.
   */
  login(login: LiveLogin, connection: LiveConnection): () => void {
    this.logins.set(connection, login);
    return () => {
      if (this.logins.get(connection) === login) this.logins.delete(connection);
    };
  }

  async list(): Promise<LiveSessionInfo[]> {
    // An SFTP connection may hold several sessions (one per subsystem channel): one line, all their transfers.
    const byId = new Map<string, LiveSessionInfo>();
    for (const { session: s } of this.entries) {
      const transfers = s.inProgress.map(liveTransfer);
      const seen = byId.get(s.id);
      byId.set(
        s.id,
        seen
          ? {
              ...seen,
              permissions: [...seen.permissions, listOfRules(s.account.permissions)],
              homes: [...seen.homes, s.account.home],
              revisions: [...seen.revisions, s.account.revision],
              transfers: [...seen.transfers, ...transfers],
            }
          : {
              ...liveInfo(s, this.worker),
              permissions: [listOfRules(s.account.permissions)],
              homes: [s.account.home],
              revisions: [s.account.revision],
              transfers,
            },
      );
    }
    for (const login of this.logins.values()) {
      if (!byId.has(login.id)) byId.set(login.id, { ...liveInfo(login, this.worker), permissions: [], homes: [], revisions: [], transfers: [] });
    }
    return [...byId.values()];
  }

  async end(id: string, reason: string): Promise<boolean> {
    const [ended, refused] = await Promise.all([this.endWhere((s) => s.id === id, reason), this.refuseOpenings((o) => o.id === id, reason)]);
    return ended.size + refused.size > 0;
  }

  async endUser(user: string, reason: string): Promise<number> {
    const at = performance.now();
    this.userEnds.delete(user);
    this.userEnds.set(user, { at, reason });
    forgetOld(this.userEnds, at, (end) => end.at);
    const [ended, refused] = await Promise.all([this.endWhere((s) => s.account.name === user, reason), this.refuseOpenings((o) => o.user === user, reason)]);
    return new Set([...ended, ...refused]).size;
  }

  async userChanged(userId: number | null): Promise<UserChangeCounts> {
    // Before the read: a session whose login read the user before it, registered after the
    // entries are taken below, catches up (catchUp).
    this.noteChange(userId);
    if (userId === null) return { renewed: 0, ended: 0 };
    const chosen = [...this.entries].filter((e) => e.session.account.id === userId);
    // The user's sessions opening read it again as they register (catchUp): those it refuses then are
    // recorded before this returns. Taken now: one that begins after this call read the user after the change.
    const opening = [...this.openings].filter((o) => o.userId === userId);
    const renewed = new Set<string>();
    const ended = new Set<string>();
    const now = new Map<string, StoredAccess | null | Unread>();
    for (const entry of chosen) {
      const { account } = entry.session;
      // By name and id: a session of a user removed since (its id taken by another) must not get the other's rights.
      if (!now.has(account.name)) now.set(account.name, await this.users.storedAccess(account).catch((err: unknown) => new Unread(err)));
      const access = now.get(account.name) ?? null;
      const why = access === null
        ? 'user removed by an administrator'
        // Closed rather than left on rules the change may have narrowed.
        : access instanceof Unread ? `user changed by an administrator, and its permissions could not be read (${access.message})`
        : outlivesAccess({ home: account.home, scans: entry.session.scans }, { home: access.home, scans: this.scansFor(access.scan) })
        ?? (takesAnyAway(account.permissions, access.permissions) ? 'permissions taken away by an administrator' : null);
      // Ended already with another session of its connection (an SSH connection's channels share its id).
      if (ended.has(entry.session.id)) continue;
      if (why !== null) {
        await this.endNow(entry, why);
        ended.add(entry.session.id);
      } else if (!sameRules(account.permissions, (access as StoredAccess).permissions)) {
        entry.session.renewPermissions((access as StoredAccess).permissions);
        renewed.add(entry.session.id);
      }
    }
    await this.awaitOpenings(opening);
    return { renewed: renewed.size, ended: ended.size };
  }

  /**
   * A session just registered: if a change of its user was told here after
   * its login read the user, the session missed what that change did to the
   * sessions (ended them, renewed their permissions): it reads the user again
   * as a login would. False: the user may not open it now.
   */
  async catchUp(session: LiveSession): Promise<boolean> {
    const { account, context } = session;
    if (Math.max(this.told.get(account.id) ?? -Infinity, this.toldAny) < account.readAt) return true;
    const now = await this.users.refreshed(account, context);
    if (now === null || outlivesAccess({ home: account.home, scans: session.scans }, { home: now.home, scans: this.scansFor(now.scan) }) !== null) return false;
    if (!sameRules(account.permissions, now.permissions)) session.renewPermissions(now.permissions);
    return true;
  }

  /**
   * Kept for as long as a login may take between its read and its session
   * (LOGIN_SPAN_MS). The map stays in the order of the times (each note moves
   * its user to the end), so the old ones go from its front: a bulk change of
   * many users costs each note a constant, not a pass over all of them.
   */
  private noteChange(userId: number | null): void {
    const at = performance.now();
    if (userId === null) return void (this.toldAny = at);
    this.told.delete(userId);
    this.told.set(userId, at);
    forgetOld(this.told, at, (when) => when);
  }

  /**
   * The server stops: idle sessions end at once; the others once their
   * transfers in progress have ended (no new one starts), or when `deadline`
   * settles, whichever comes first: then what is left is aborted, for the
   * reason it settles with.
   */
  async drain(reason: string, deadline: Promise<string>): Promise<DrainCounts> {
    this.stopping = true;
    this.deadline = deadline;
    const counts: DrainCounts = { endedIdle: 0, transfersFinished: 0, transfersAborted: 0 };
    // Sessions opening now open none (their check() throws): waited for, so that their logouts are recorded
    // before the drain is done, and none is left opening while the server closes.
    const opening = this.awaitOpenings([...this.openings]);
    // By connection: ending one session of an SSH connection ends its others, so an idle channel, or a
    // channel whose last transfer ended first, waits for the transfers of the rest.
    await Promise.all(
      [...this.byConnection].map(async ([connection, group]) => {
        const entries = [...group];
        const running = entries.flatMap((e) => e.session.inProgress);
        counts.endedIdle += entries.filter((e) => e.session.inProgress.length === 0).length;
        if (running.length === 0) return this.endConnection(connection, reason);
        const wound = Promise.all(entries.map((e) => e.session.windDown(reason, false)));
        const cut = await Promise.race([wound.then(() => null), deadline]);
        // Ending after the last reply waits for the client to take it, which one that stopped reading never does
        // (found by a review: an SFTP client that opened no more window after its last CLOSE held the stop for
        // good): the deadline ends that wait too.
        const late = cut ?? (await Promise.race([connection.end(reason, true).then(() => null), deadline]));
        if (late !== null) await this.endConnection(connection, late);
        for (const t of running) {
          if (t.outcome === 'ok') counts.transfersFinished++;
          else counts.transfersAborted++;
        }
      }),
    );
    await opening;
    return counts;
  }

  private async endWhere(match: (s: LiveLogin) => boolean, reason: string): Promise<Set<string>> {
    const chosen = [...this.entries].filter((e) => match(e.session));
    // One end per connection: it ends every session on it.
    const byConnection = new Map<LiveConnection, Entry | undefined>(chosen.map((e) => [e.connection, e]));
    // A login between its sessions (see login) ends with its connection, as they would.
    const standing = [...this.logins].filter(([connection, login]) => match(login) && !byConnection.has(connection));
    for (const [connection] of standing) byConnection.set(connection, undefined);
    await Promise.all([...byConnection].map(([connection, entry]) => this.endConnection(connection, reason, entry)));
    return new Set([...chosen.map((e) => e.session.id), ...standing.map(([, login]) => login.id)]);
  }

  private endNow(entry: Entry, reason: string): Promise<void> {
    return this.endConnection(entry.connection, reason, entry);
  }

  /**
   * Ending a session ends its connection, and with it every session on it
   * (an SSH connection's channels): all are wound down first, aborted for
   * `reason`, so their records carry it, not whatever the front-end's close
   * would say. Only the one chosen was, before (found by a review): a
   * permission change ended one channel's session for its reason, and cut
   * the uploads of the others as 'channel closed', their logouts saying
   * nothing.
   */
  private async endConnection(connection: LiveConnection, reason: string, chosen?: Entry): Promise<void> {
    // Until it has closed, its client may still ask for a session (an SSH channel sent behind the end): refused.
    this.ended.set(connection, reason);
    const sessions = [...(this.byConnection.get(connection) ?? [])].map((e) => e.session);
    // One no longer registered (closed meanwhile) is wound down all the same: that does nothing.
    if (chosen && !sessions.includes(chosen.session)) sessions.push(chosen.session);
    // A session opening on the connection (an SSH channel opened beside those) ends with it: it opens none.
    await Promise.all([
      ...sessions.map((s) => s.windDown(reason, true)),
      connection.end(reason, false),
      this.refuseOpenings((o) => o.connection === connection, reason),
    ]);
  }
}

/**
 * Pure: why a session that serves `held.home` may not go on when its user's
 * home is `now.home`, or null. A session is rooted where its login read the
 * home, and a session left there once the home moved served a place that
 * is no longer its user's: a new home may then be made inside it, and such a
 * session planted a symlink where one was about to be made (found by a
 * review: the new user's login followed it into a third user's home).
 */
export function outlivesHome(held: Pick<Account, 'home'>, now: Pick<Account, 'home'>): string | null {
  return held.home === now.home ? null : 'home changed by an administrator';
}

/**
 * Pure: outlivesHome, and why a session that scans its uploads or not
 * (`held.scans`) may not go on when its user's sessions would now
 * (`now.scans`): one that does not scan while its user's uploads must be.
 * A session decides at its start whether it scans, and one from before
 * `--scan` took uploads unscanned for as long as it lasted (found by a
 * review: EICAR uploaded and served back through an SFTP session open
 * before the change). What is compared is whether each scans, not the
 * settings: a setting that changes nothing here (`--scan` where the
 * server scans every user already) ends nothing.
 */
export function outlivesAccess(held: { home: string; scans: boolean }, now: { home: string; scans: boolean }): string | null {
  const moved = outlivesHome(held, now);
  if (moved !== null) return moved;
  return now.scans && !held.scans ? 'scanning turned on by an administrator' : null;
}

/** A store read that failed, in place of the rules it would have read. */
class Unread {
  readonly message: string;
  constructor(err: unknown) {
    this.message = err instanceof Error ? err.message : String(err);
  }
}

/**
 * Longer than any login takes from reading its user to registering its
 * session (limits.loginTimeout is 600 s at most; an SSH channel reads the
 * user as it opens): a change told longer ago concerns no login under way.
 */
const LOGIN_SPAN_MS = 10 * 60 * 1000;

/**
 * Drops from the front of `map`, whose entries are in the order of their
 * times (each note moves its key to the end), those older than
 * LOGIN_SPAN_MS at `at`: they concern no login under way.
 */
function forgetOld<K, V>(map: Map<K, V>, at: number, when: (value: V) => number): void {
  for (const [key, value] of map) {
    if (at - when(value) <= LOGIN_SPAN_MS) break;
    map.delete(key);
  }
}

/**
 * How long an end waits for a session opening that it refused to fail: a
 * home opens in milliseconds; one held longer by something outside the
 * server (a hung file system) fails whenever it gets on, for the end's reason.
 */
const OPENING_WAIT_MS = 10_000;

/** What the list says of a session, or of a login between its sessions, whatever it holds. */
function liveInfo(s: LiveLogin, worker: number): Omit<LiveSessionInfo, 'permissions' | 'homes' | 'revisions' | 'transfers'> {
  return {
    id: s.id,
    user: s.account.name,
    userId: s.account.id,
    protocol: s.context.protocol,
    ip: s.context.remoteAddress,
    port: s.context.remotePort,
    method: s.account.method,
    key: s.account.key,
    worker,
    since: s.since.toISOString(),
  };
}

function liveTransfer(t: LiveTransferState): LiveTransfer {
  return { direction: t.direction, path: t.path, bytes: t.transferred, started: t.started.toISOString() };
}

/** The drain's one log line. */
export function drainSummary(c: DrainCounts): string {
  return `drained: ${c.endedIdle} idle sessions ended, ${c.transfersFinished} transfers finished, ${c.transfersAborted} aborted`;
}
