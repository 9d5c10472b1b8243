import type { FailureTally, UserSessionCounts } from '../coordinator/shared-state.js';
import type { QuotaRooms, SharedWriteLocks } from '../session/quota.js';
import type { AdminTokenRecord, BanRecord, NewKey, PublicKeyRecord, UserRecord, UserSettings } from './records.js';

export type { AdminTokenRecord, BanRecord, NewKey, PublicKeyRecord, UserRecord, UserSettings };

/**
 * The user store as the rest of sluice sees it, whichever database keeps it:
 * SQLite in this process (the default) or PostgreSQL shared by several
 * nodes. Every call may be a network round trip, so every call is
 * asynchronous; what a transfer needs is read once at login (the Account),
 * so no transfer path waits on it.
 */
export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly users: UserRepository;
  readonly bans: BanRepository;
  readonly tokens: AdminTokenRepository;
  /**
   * What the nodes sharing this store count together, as node `nodeId`'s
   * part of it (a node id is unique; what a node held when it last stopped
   * or died is given back first). null: the store is one node's (SQLite),
   * which counts in its own memory. `onError`: a write no one waits for
   * failed, or the connection holding the node id was lost. Rejects when a
   * node with this id is running already.
   */
  shared(nodeId: string, onError: (err: unknown) => void): Promise<SharedCounts | null>;
  /**
   * Why this store was opened to read only, naming its file (`... cannot be written: permission denied`): a
   * CLI command's SQLite store it may not write (openStore). null: it takes writes.
   */
  readonly readOnly: string | null;
  /** The nodes sharing this store and what each holds; null: the store is one node's (SQLite). */
  readonly nodes: NodeRegistry | null;
  /** Answers a trivial query (for /readyz); rejects when the database does not. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** One node's part of the counts several nodes keep in their shared store. */
export interface SharedCounts {
  /** The defender's offences per address, every node's. */
  readonly failures: FailureTally;
  /** Logged-in sessions per user, every node's. */
  readonly userSessions: UserSessionCounts;
  /** Each user's quota, of which this node holds leases. */
  readonly quota: QuotaRooms;
  /** The in-place locks of users' files, among every node. */
  readonly writeLocks: SharedWriteLocks;
  /**
   * `listener` is told of every user whose access was narrowed on any node
   * (disabled, expired, removed, a key removed), to end its sessions here.
   */
  onUserRevoked(listener: (user: string, why: string) => void): void;
  /**
   * `listener` is told that a user's settings, rules, keys or permissions
   * changed on any node or in the CLI (its id), and with null when changes
   * may have gone unheard or the notice names nobody: live sessions here, of
   * that user or of all, are to be checked against their users as stored now.
   */
  onUserChanged(listener: (userId: number | null) => void): void;
  /**
   * `listener` is told of every address (or IPv6 network) an administrator
   * banned on any node or in the CLI, to end its sessions here as the node
   * that took the ban ends its own (the defender's bans are not told).
   */
  onAddressBanned(listener: (address: string, before: number | null) => void): void;
  /**
   * `listener` is told of every user whose sessions an administrator ended
   * through any node (endUserSessions), to end them here. `before` (both
   * listeners): null for an end told as it is made; for one read late (this
   * node was not listening then), when it was made, on this node's clock
   * (unix ms): the sessions that logged in after it are not its to end.
   */
  onUserSessionsEnded(listener: (user: string, reason: string, before: number | null) => void): void;
  /**
   * Tell every node, this one included, to end `user`'s live sessions with
   * `reason` (DELETE /users/NAME/sessions): each ends its own. Rejects when
   * the store does not take it: the other nodes were not told.
   */
  endUserSessions(user: string, reason: string): Promise<void>;
  /**
   * `listener` is told when this node, taking its id again after its lock's
   * connection was lost, finds that `sluice store forget-node` gave back what
   * it held meanwhile: its live sessions' counts and quota leases are no
   * longer in the store, so the sessions are to end (they would pass the
   * users' limits unseen by the other nodes).
   */
  onForgotten(listener: () => void): void;
  /** A clean stop: this node's leases, session counts and locks go back. */
  stop(): Promise<void>;
}

/** A user and its public keys, as a login reads them. */
export interface Credentials {
  readonly user: UserRecord;
  readonly keys: readonly PublicKeyRecord[];
  /**
   * When they were read from the database (performance.now()), where that
   * was before the call: a copy the store kept. A change told to the process
   * after it must reach the login (LiveRegistry.catchUp).
   */
  readonly readAt?: number;
}

/** What one node holds in a shared store: quota leases, and its users' sessions in the sums. */
export interface NodeHolding {
  readonly nodeId: string;
  readonly heldBytes: number;
  readonly heldFiles: number;
  readonly sessions: number;
  /** A node with this id runs now (it holds its id's lock). */
  readonly running: boolean;
}

/** For an administrator: the nodes holding something in the shared store. */
export interface NodeRegistry {
  list(): Promise<NodeHolding[]>;
  /**
   * What node `nodeId` holds goes back, as its own next start would give it
   * back: for a node that will not return. 'running' (and nothing changes)
   * while a node with that id runs; the seconds since its last heartbeat
   * (and nothing changes) while it was seen alive too recently to be known
   * done writing files in place (a node cut off from PostgreSQL, or frozen,
   * shows as not running at once), unless `force`.
   */
  forget(nodeId: string, force?: boolean): Promise<NodeHolding | 'running' | { seenSecondsAgo: number }>;
}

/** A name or key that exists already: both databases' unique constraints, as one error. */
export class StoreConflict extends Error {
  override readonly name = 'StoreConflict';
}

/**
 * The user a key or a directory's permissions were written for is gone:
 * removed (by another node, the CLI, another request) after the caller read
 * it. Both databases' foreign keys, as one error; nothing is written.
 */
export class StoreUserGone extends Error {
  override readonly name = 'StoreUserGone';
}

/**
 * The database cannot take the write now and wrote nothing: it gave up
 * waiting for a lock another holds (or for an answer), or its file system
 * is full. The same write may go through later (the admin API answers 503).
 * Raised by PostgreSQL's limits (store/postgres/connection.ts) and SQLite's
 * refused writes (store/sqlite/write-errors.ts).
 */
export class StoreUnavailable extends Error {
  override readonly name = 'StoreUnavailable';
}

/** A write to a store opened to read only (Store.readOnly): nothing was changed. */
export class StoreReadOnly extends StoreUnavailable {}

/**
 * A check of a home about to be written, against the homes of the other
 * users as stored, run inside the transaction that writes it and under a
 * lock every such transaction takes, on every node: two users added at once,
 * one's home inside the other's, were each checked against a store without
 * the other and both made (found by a review: the outer user then read and
 * overwrote the inner one's files). Throws to refuse; nothing is written.
 */
export type HomeCheck = (others: readonly HomeOfUser[]) => void;

/** A stored user's home, as HomeCheck sees it. */
export interface HomeOfUser {
  readonly id: number;
  readonly name: string;
  readonly home: string;
}

export interface UserRepository {
  count(): Promise<number>;
  /** By name, case-insensitively (names are unique regardless of case). */
  get(name: string): Promise<UserRecord | null>;
  /**
   * What a login decides on, by name as get(): the user and its keys, in one
   * snapshot. May come from a copy the store keeps current (PostgreSQL: see
   * postgres/user-cache.ts), so its usage counters and last login may be behind.
   */
  credentials(name: string): Promise<Credentials | null>;
  getById(id: number): Promise<UserRecord | null>;
  all(): Promise<UserRecord[]>;
  /**
   * Insert a user with its address rules and keys in one transaction; StoreConflict when the name is taken.
   * `checkHome` runs in it first (see HomeCheck).
   */
  create(name: string, passwordHash: string | null, settings: UserSettings, keys?: NewKey[], checkHome?: HomeCheck): Promise<UserRecord>;
  /**
   * Change the settings `patch` names, the others as they are: read and
   * written under the row's lock, so concurrent updates of other settings
   * (from any node or the CLI) are never lost. False, and nothing written, when there is no such user.
   * `checkHome` runs in the same transaction first (see HomeCheck). `passwordHash`, when given, is written in
   * the same transaction: a request that changes settings and the password changes both or neither.
   */
  update(id: number, patch: Partial<UserSettings>, checkHome?: HomeCheck, passwordHash?: string): Promise<boolean>;
  remove(id: number): Promise<void>;
  setPasswordHash(id: number, hash: string | null): Promise<void>;
  /**
   * A login storing its password at today's parameters: `to` replaces `from`
   * only while `from` is still the stored hash; false when it is not (an
   * administrator changed the password after the login read it, or another
   * login rehashed it first). Written unconditionally, a rehash put the old
   * password back over an administrator's change made during its login.
   * It never waits behind administrators' writes (PostgreSQL's WriteTurns)
   * for a turn: it is bookkeeping, and its login must not hang on them.
   */
  rehashPassword(id: number, from: string, to: string): Promise<boolean>;
  /** Settles at once; both stores write these in batches, up to a second (postgres/last-logins.ts) or 100 ms (sqlite/deferred-writes.ts) later. */
  recordLogin(id: number): Promise<void>;
  usage(userId: number): Promise<{ bytes: number; files: number }>;
  /** Add to the counters atomically (never below zero), whatever other nodes add at the same time. */
  addUsage(userId: number, bytes: number, files: number): Promise<void>;
  /** Replace the counters with a recount of the disk. */
  setUsage(userId: number, bytes: number, files: number): Promise<void>;
  /** null removes the directory's override; false when there was none to remove. StoreUserGone when there is no such user. */
  setDirPermissions(userId: number, path: string, permissions: UserRecord['permissions'] | null): Promise<boolean>;
  keys(userId: number): Promise<PublicKeyRecord[]>;
  /** Every user's keys, by user id: what the start reads to say which no login takes. */
  everyKey(): Promise<{ userId: number; key: PublicKeyRecord }[]>;
  /** StoreConflict when the user has that key already, StoreUserGone when there is no such user. */
  addKey(userId: number, key: NewKey): Promise<void>;
  removeKey(userId: number, fingerprint: string): Promise<boolean>;
}

export interface BanRepository {
  /** The address's row, current ban or past one. */
  get(address: string): Promise<BanRecord | null>;
  /** Bans in force at `now`. */
  active(now?: number): Promise<BanRecord[]>;
  activeCount(now?: number): Promise<number>;
  put(address: string, until: Date | null, count: number, reason: string): Promise<void>;
  /**
   * The defender's ban, decided at `since` with none in force: written unless another is in force by now (an
   * administrator's or another node's, made while this one waited for the store), which stands. False: it stood.
   */
  putUnlessBanned(address: string, until: Date, count: number, reason: string, since: Date): Promise<boolean>;
  /** Remove the defender's ban decided at `since` (putUnlessBanned), and no other; false when the row is not that one. */
  removeOwn(address: string, since: Date): Promise<boolean>;
  /** A ban by an administrator: counted as one more in the address's row, so the defender's next one is longer. */
  add(address: string, until: Date | null): Promise<void>;
  /** Lift the ban and forget the address's history; false when there was none. */
  remove(address: string): Promise<boolean>;
  /**
   * Is the address banned now? Asked at every accept, so it answers without
   * waiting: from the database itself where that is a local look-up
   * (SQLite), from a copy the database keeps current otherwise.
   */
  banned(address: string): boolean;
}

export interface AdminTokenRepository {
  /** False: a token of that name exists already. Names are compared without case, as user names are. */
  add(name: string, hash: Buffer): Promise<boolean>;
  /** False: there was none of that name (in any case). */
  remove(name: string): Promise<boolean>;
  /** The name of the token with this hash, noted as used now; null: no such token. */
  use(hash: Buffer): Promise<string | null>;
  all(): Promise<AdminTokenRecord[]>;
}
