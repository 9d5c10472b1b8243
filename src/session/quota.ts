import type { Account } from './account.js';
import { SluiceError } from './errors.js';
import { LazyMap, LazySet } from './lazy-collections.js';
import { inodeOfKey, nodeKey, type NodeStat } from './storage/storage.js';

/** What a quota counts: bytes of regular files, and names. */
export interface Usage {
  bytes: number;
  files: number;
}

/**
 * Where the ledgers of one process get their users' usage and the room they
 * may hand out. One node (LocalRooms): the room is the quota less what is
 * used, all of it at once. Several nodes on one database
 * (store/postgres/quota.ts): each node holds a lease of the quota, taken a
 * few MiB at a time, so a transfer waits on the database only when its
 * node's lease runs out, and the nodes' leases with what is used never pass
 * the quota.
 */
export interface QuotaRooms {
  /** A ledger of `account` is made in this process. */
  open(account: Account): Promise<QuotaRoom>;
}

/** One user's room in one process: what its ledger may have in flight. */
export interface QuotaRoom {
  /** The user's usage when the ledger was made. */
  readonly used: Usage;
  /** The room at first (for each limited dimension; unlimited ones are never checked). */
  readonly room: Usage;
  /**
   * At least `need` more room, resolving to how much was added (perhaps
   * more); rejects with quota-exceeded when the quota has not that much left.
   * null: the room is the whole quota already, no more can come.
   */
  readonly grow: ((need: Usage) => Promise<Usage>) | null;
  /**
   * An operation has ended: the counters change by `delta` and the room by
   * minus `moved` (what landed came out of it, what was freed went back);
   * `spare` is the room nothing is in flight in now. Returns at once what of
   * `spare` goes back; nothing here is waited on, and what it writes is
   * written in the order given.
   */
  settle(delta: Usage, moved: Usage, spare: Usage): Usage;
  /**
   * The user's limits are now `account`'s (a newer read of the user): the room
   * the ledger has, with `inflight` of it taken, becomes what is returned.
   */
  relimit(account: Account, room: Usage, inflight: Usage): Usage;
  /** The ledger is dropped: its room goes back. */
  close(): void;
}

/**
 * Several nodes: the in-place locks of the users' files (see
 * QuotaLedger.lockInPlace) among all of them (store/postgres/write-locks.ts).
 * Each node's ledgers still lock among its own sessions first; this is asked
 * after, so that a file one node writes in place is not removed, truncated
 * or written in place on another meanwhile, which gave the user back bytes
 * never charged, round after round (found by a review).
 */
export interface SharedWriteLocks {
  /**
   * True when the file `inode` was nobody else's and is now this node's: any
   * user's session on any node holds it against every other (two users may
   * share a home); `userId` only says whose session took it.
   */
  take(userId: number, inode: string): Promise<boolean>;
  /**
   * This node is done with it: let go once the store takes it. Resolves when
   * the first attempt has run (see LedgerHandle.synced); one that failed is
   * tried again, and the file stays locked meanwhile.
   */
  give(userId: number, inode: string): Promise<void>;
}

/** The persisted counters of a store in this process, answered at once (SQLite). */
export interface UsageCounters {
  usage(userId: number): Usage;
  addUsage(userId: number, bytes: number, files: number): void;
}

const NOTHING: Usage = { bytes: 0, files: 0 };

/** One node: the room is the quota less what is used, and the store's counters are its own. */
export class LocalRooms implements QuotaRooms {
  constructor(private readonly store: UsageCounters) {}

  async open(account: Account): Promise<QuotaRoom> {
    const used = this.store.usage(account.id);
    let limits = account;
    return {
      used,
      room: { bytes: account.quotaBytes - used.bytes, files: account.quotaFiles - used.files },
      grow: null,
      settle: (delta) => {
        if (delta.bytes !== 0 || delta.files !== 0) this.store.addUsage(account.id, delta.bytes, delta.files);
        return NOTHING;
      },
      // Used plus room is the quota (0 when unlimited, where the room is never checked): it moves by what the quota moved.
      relimit: (next, room) => {
        const moved = { bytes: next.quotaBytes - limits.quotaBytes, files: next.quotaFiles - limits.quotaFiles };
        limits = next;
        return { bytes: room.bytes + moved.bytes, files: room.files + moved.files };
      },
      close: () => undefined,
    };
  }
}

/**
 * quota-exceeded, with how much room was missing: a ledger whose room can
 * grow (several nodes) asks for that much and tries again.
 */
class Shortfall extends SluiceError {
  constructor(readonly need: Usage) {
    super('quota-exceeded');
  }
}

/**
 * One ledger per user, shared by all of that user's sessions, so concurrent
 * uploads are summed. Bytes are reserved as they are written and settled into
 * the persisted counters when the operation ends.
 *
 * What is counted: bytes of regular files, each inode once (a hard link adds
 * none; removing a name frees bytes only when it was the last link), and
 * names: every file, hard link, directory and symlink in the home. Bytes in
 * flight (an atomic upload's temporary) are reserved whole, so the disk holds
 * no more than the quota plus the files an overwrite in flight will replace.
 *
 * Every check is `in flight + asked <= room`: with one node the room is the
 * quota less what is used, so this is `used + in flight + asked <= quota`;
 * with several it is this node's lease, and a check that falls short throws
 * a Shortfall, which `grown` turns into a larger lease when the quota has it.
 */
export class QuotaLedger {
  /**
   * The newest revision of the user's record a session brought (see
   * Account.revision): a quota set or changed while the user is logged in
   * applies from the next session on, to every session.
   */
  private limits: { quotaBytes: number; quotaFiles: number; revision: number };
  private used: Usage;
  private room: Usage;
  private inflightBytes = 0;
  private inflightFiles = 0;
  /** Files (dev:ino) whose size an overwrite in flight counts on freeing: one claimant each. */
  private readonly claims = new Set<string>();
  /** Files (dev:ino) the user's downloads hold open, with how many hold each (see reading). */
  private readonly readers = new Map<string, number>();
  /** Bytes of files whose last name went while a download held them: freed when the last one lets go. */
  private readonly unfreed = new Map<string, number>();
  /** Files of unfreed charged again by heldGone before their removal's freed came: that freed credits them (see heldGone). */
  private readonly prepaid = new Set<string>();
  constructor(
    account: Account,
    private readonly source: QuotaRoom,
    /** The process's locked files (see InPlaceWriters): every user's, not this user's only. */
    private readonly writers: InPlaceWriters = new Map(),
  ) {
    this.limits = { quotaBytes: account.quotaBytes, quotaFiles: account.quotaFiles, revision: account.revision };
    this.used = { ...source.used };
    this.room = { ...source.room };
  }

  /** No quota of either kind: no check of this ledger can fail. */
  get unlimited(): boolean {
    return this.limits.quotaBytes === 0 && this.limits.quotaFiles === 0;
  }

  /**
   * A session brought the user's record as read for it: if it is newer than
   * any before, from now on every check of every session counts against its
   * limits; what is in flight stays reserved (uploads under way go on until
   * their next check). An older read (a login that read the user before a
   * change but came here after) changes nothing. True when the limits changed.
   */
  relimit(account: Account): boolean {
    const { quotaBytes, quotaFiles, revision } = account;
    if (revision <= this.limits.revision) return false;
    const changed = quotaBytes !== this.limits.quotaBytes || quotaFiles !== this.limits.quotaFiles;
    if (changed) this.room = this.source.relimit(account, this.room, { bytes: this.inflightBytes, files: this.inflightFiles });
    this.limits = { quotaBytes, quotaFiles, revision };
    return changed;
  }

  /**
   * Steps a session took without asking, believing the user unlimited (see
   * LedgerHandle.said): reserved unchecked, so that the checks after them,
   * under any limits set since, count them.
   */
  take(bytes: number, files: number): void {
    this.inflightBytes += bytes;
    this.inflightFiles += files;
  }

  /** Several nodes: what was used when the ledger opened, with this node's changes since. */
  get usage(): Usage {
    return { ...this.used };
  }

  /**
   * Before an upload starts: is there room for any byte at all, counting what
   * replacing the old file frees, and for a new name? A new name's slot is
   * held from here; the upload releases it when it ends.
   */
  checkStart(createsFile: boolean, credit: number): void {
    const short = this.inflightBytes - credit + 1 - this.room.bytes;
    if (this.limits.quotaBytes > 0 && short > 0) throw new Shortfall({ bytes: short, files: 0 });
    if (createsFile) this.holdFile();
  }

  /** Reserve a slot for a new name while it is being made; throws quota-exceeded when none is left. */
  holdFile(): void {
    const short = this.inflightFiles + 1 - this.room.files;
    if (this.limits.quotaFiles > 0 && short > 0) throw new Shortfall({ bytes: 0, files: short });
    this.inflightFiles++;
  }

  releaseFile(): void {
    this.inflightFiles--;
  }

  /**
   * Reserve `bytes` of growth; `credit` is what the transfer will free when it
   * ends (the size of the file it replaces, measured now). Throws
   * quota-exceeded without reserving.
   */
  reserve(bytes: number, credit: number): void {
    const short = this.inflightBytes + bytes - credit - this.room.bytes;
    if (this.limits.quotaBytes > 0 && short > 0) throw new Shortfall({ bytes: short, files: 0 });
    this.inflightBytes += bytes;
  }

  /**
   * After a check threw: true once the room it missed has been added (its
   * room can grow, and the quota had it), so the check may run again.
   */
  async grown(err: unknown): Promise<boolean> {
    if (!(err instanceof Shortfall) || this.source.grow === null) return false;
    let added: Usage;
    try {
      added = await this.source.grow(err.need);
    } catch (e) {
      if (e instanceof SluiceError && e.kind === 'quota-exceeded') return false;
      throw e;
    }
    this.room = { bytes: this.room.bytes + added.bytes, files: this.room.files + added.files };
    return true;
  }

  /**
   * Claim the right to count on freeing the file `key` (dev:ino). Two uploads
   * replacing one file would otherwise both count its size as room.
   */
  claim(key: string): boolean {
    if (this.claims.has(key)) return false;
    this.claims.add(key);
    return true;
  }

  unclaim(key: string): void {
    this.claims.delete(key);
  }

  /**
   * One writer at a time changes a file (dev:ino) where it lies: an in-place
   * upload charges what the file grew by since it opened, so another writer or
   * a truncation meanwhile would be counted twice or not at all. Throws when
   * the file is taken; `unlockInPlace` when done.
   */
  lockInPlace(key: string): void {
    if (this.writers.has(key)) throw new SluiceError('failure', 'File is being written by another transfer');
    this.writers.set(key, 'write');
  }

  /** The same lock, for a brief change of the node's names (see Ledger.lockNames); says who holds it when taken. */
  lockNames(key: string): NamesLock {
    const holder = this.writers.get(key);
    if (holder !== undefined) return holder === 'write' ? 'written' : 'busy';
    this.writers.set(key, 'names');
    return 'locked';
  }

  unlockInPlace(key: string): void {
    this.writers.delete(key);
  }

  /**
   * The moment an upload's bytes land: `written` bytes replace `freed` (what
   * the target really frees now), and a new name needs a slot unless the
   * upload holds one. Every other reservation still counts, so what is
   * committed plus what is in flight stays within the quota.
   */
  checkCommit(reserved: number, written: number, freed: number, newName: boolean): void {
    const { quotaBytes, quotaFiles } = this.limits;
    const bytes = quotaBytes > 0 ? Math.max(0, this.inflightBytes - reserved + written - freed - this.room.bytes) : 0;
    const files = newName && quotaFiles > 0 ? Math.max(0, this.inflightFiles + 1 - this.room.files) : 0;
    if (bytes > 0 || files > 0) throw new Shortfall({ bytes, files });
  }

  /** End of an operation: drop its reservation and record the real change. */
  settle(reserved: number, bytesDelta: number, filesDelta: number): void {
    this.inflightBytes -= reserved;
    const before = this.used;
    this.used = { bytes: Math.max(0, before.bytes + bytesDelta), files: Math.max(0, before.files + filesDelta) };
    // What lands comes out of the room and what is freed goes back into it: used plus room stays the same.
    const moved = { bytes: this.used.bytes - before.bytes, files: this.used.files - before.files };
    this.room = { bytes: this.room.bytes - moved.bytes, files: this.room.files - moved.files };
    const spare = { bytes: this.room.bytes - this.inflightBytes, files: this.room.files - this.inflightFiles };
    const back = this.source.settle({ bytes: bytesDelta, files: filesDelta }, moved, spare);
    this.room = { bytes: this.room.bytes - back.bytes, files: this.room.files - back.files };
  }

  /**
   * A download holds the file `key` (dev:ino) open: its bytes stay on the
   * disk, whatever becomes of its names, until the download lets go
   * (doneReading). See freed.
   */
  reading(key: string): void {
    this.readers.set(key, (this.readers.get(key) ?? 0) + 1);
  }

  doneReading(key: string): void {
    const n = this.readers.get(key) ?? 0;
    if (n > 1) return void this.readers.set(key, n - 1);
    this.readers.delete(key);
    this.prepaid.delete(key);
    const bytes = this.unfreed.get(key);
    if (bytes === undefined) return;
    this.unfreed.delete(key);
    this.settle(0, -bytes, 0);
  }

  /**
   * A removal (a delete, a rename or an upload over the name) took `names`
   * names and, with the last name of the file `key`, its `bytes`. Those
   * bytes leave the usage only once no download of the user holds the file
   * open: until then they are on the disk still. Before (found by a
   * review), a user with a 1 MiB quota uploaded a file, opened it for
   * reading, removed it, and did so again and again: each file held its
   * bytes on the disk through its open handle, off the usage, and one SFTP
   * channel held 256 times the quota.
   */
  freed(key: string, bytes: number, names: number): void {
    // Charged again already, by the download that found the file gone (see heldGone): the removal takes that off.
    if (bytes > 0 && this.prepaid.delete(key)) return this.settle(0, -bytes, -names);
    const held = bytes > 0 && this.readers.has(key);
    if (held) this.unfreed.set(key, (this.unfreed.get(key) ?? 0) + bytes);
    this.settle(0, held ? 0 : -bytes, -names);
  }

  /**
   * A download (reading `key` already) found the file it holds open with no
   * name left (a link count of 0): its removal may have been freed before
   * the download was known here, its bytes then off the usage while still on
   * the disk. They go back on it until the last download lets go, unless
   * they are held already. If that removal's freed is still to come (another
   * worker's, or behind), it takes this charge off rather than holding the
   * bytes twice. Before (found by a review), a REMOVE landing between a
   * download's open and its registration here freed the file at once.
   */
  heldGone(key: string, bytes: number): void {
    if (bytes <= 0 || !this.readers.has(key) || this.unfreed.has(key)) return;
    this.unfreed.set(key, bytes);
    this.prepaid.add(key);
    this.settle(0, bytes, 0);
  }

  /** The last session of the user in this process has ended. */
  close(): void {
    this.source.close();
  }
}

/**
 * A user's quota ledger as one session sees it. The ledger itself may live
 * in this process or in another (the primary, for all workers): each call is
 * one atomic step there, and calls from one process reach it in the order
 * they were made, so the releases need no answer; where another process must
 * see a release before it acts, `synced()` waits for it.
 */
export interface Ledger {
  /** No quota now: no check can fail (a quota set later is told, and counts from the next check). */
  readonly unlimited: boolean;
  /**
   * Before an upload opens its file, in one step: claim the file it replaces
   * (when `claim` is given: its size, `credit`, counts as room only if won),
   * check the start (see QuotaLedger.checkStart), take the in-place lock
   * (`lock`). True when the claim was won. Refused: nothing is left held.
   */
  checkStart(start: UploadStart): Promise<boolean>;
  holdFile(): Promise<void>;
  releaseFile(): void;
  reserve(bytes: number, credit: number): Promise<void>;
  unclaim(key: string): void;
  lockInPlace(key: string): Promise<void>;
  /**
   * The same lock for a brief change of the node's names (a removal, a move,
   * a hard link): 'locked' when taken (let go with unlockInPlace), else who
   * holds it: 'written', an in-place write (for as long as its transfer
   * runs), or 'busy', another change of its names (a few system calls).
   * `among`: 'nodes', the lock among every node sharing the store (several
   * nodes); 'node', among this node's sessions only (see NamesAmong).
   */
  lockNames(key: string, among?: NamesAmong): Promise<NamesLock>;
  unlockInPlace(key: string): void;
  checkCommit(reserved: number, written: number, freed: number, newName: boolean): Promise<void>;
  settle(reserved: number, bytesDelta: number, filesDelta: number): void;
  /** A download holds the file `key` (dev:ino) open, until doneReading (see QuotaLedger.reading). */
  reading(key: string): void;
  doneReading(key: string): void;
  /** A removal took names and, with a file's last, its bytes: freed once no download holds it (see QuotaLedger.freed). */
  freed(key: string, bytes: number, names: number): void;
  /** A download reading `key` found it with no name left: its bytes stay on the usage until it lets go (see QuotaLedger.heldGone). */
  heldGone(key: string, bytes: number): void;
  usage(): Promise<{ bytes: number; files: number }>;
  /** Resolves once everything said before has reached the ledger. */
  synced(): Promise<void>;
  /** The session has ended. */
  release(): void;
}

/** What Ledger.lockNames found. */
export type NamesLock = 'locked' | 'written' | 'busy';

/**
 * Whose changes of a node's names a lock keeps out: every node's, or this
 * node's only (a new upload's own file as it takes its name: see
 * Upload.replaceLooked), where a lock among the nodes would be a round trip
 * to the store for every such file, refused while the store is away.
 */
export type NamesAmong = 'nodes' | 'node';

/** The steps of an unlimited ledger a worker says without waiting (LedgerHandle.said). */
export type SaidStep =
  | { method: 'checkStart'; args: [start: UploadStart] }
  | { method: 'holdFile'; args: [] }
  | { method: 'reserve'; args: [bytes: number, credit: number] };

/** What an upload asks its ledger for before it opens its file (Ledger.checkStart). */
export interface UploadStart {
  /** The upload makes a new name: hold a slot of the file quota for it. */
  createsFile: boolean;
  /** What the upload frees (the replaced file's size, or what truncating in place frees). */
  credit: number;
  /** The file (dev:ino) an atomic overwrite replaces, whose size is `credit` if the claim is won; null: none. */
  claim: string | null;
  /** The file (dev:ino) to lock for writing in place; null: none. */
  lock: string | null;
}

/** Where a session gets its user's ledger. */
export interface Ledgers {
  acquire(account: Account): Promise<Ledger>;
}

/** mkdir, symlink, hard link: one more name, within the file quota even when several race. */
export async function addName(ledger: Ledger, make: () => Promise<void>): Promise<void> {
  await ledger.holdFile();
  try {
    await make();
    ledger.settle(0, 0, 1);
  } finally {
    ledger.releaseFile();
  }
}

/** What removing a name with this stat frees: a file's bytes when the name is its only one. */
export function freedBytes(st: NodeStat): number {
  return st.type === 'file' && st.nlink <= 1 ? st.size : 0;
}

/**
 * What removing a name took away, measured after the removal (an unlink, a
 * rename over it) through a hold of the file the name led to when it was
 * looked at (`before`: its stat just before the removal, see dropThrough;
 * `after` the hold's stat now). Another session may
 * have moved that file away and put another under the name meanwhile: taking
 * the looked-at file's size off the usage then let a user take any file's
 * size off it again and again (found by a review). So a name counts as
 * removed only if the held file lost one, and its bytes as freed only if that
 * was its last name (the removal held the file's lock, see dropThrough: an
 * upload's growth not yet charged must not be given back).
 * Whatever else was removed is not counted: the usage errs high until the
 * next recount, never low.
 */
function removedThrough(before: NodeStat, after: NodeStat): { bytes: number; names: number } {
  // A directory's links are its subdirectories' too, which another session may move out or remove (counting
  // that itself) while this act finds the name free, the directory having been moved away (its rename takes no
  // lock of it): the count fell for nothing (found by a review). A directory has one name, and none once removed.
  const hit = after.type === 'dir' ? after.nlink === 0 && before.nlink > 0 : after.nlink < before.nlink;
  return { bytes: hit && after.type === 'file' && after.nlink === 0 ? after.size : 0, names: hit ? 1 : 0 };
}

/**
 * Remove a name (`drop`: an unlink, a rename over it, an upload's commit)
 * that led to the node `held` holds when it was looked at (`looked`), and
 * measure what that took away (see removedThrough). The links are counted
 * again just before the act, under the node's lock, which every change of a
 * node's names takes (see namesLocked): counted at the look, another
 * session's removal of the same file in between (which gave its bytes back
 * itself) made the count fall as if this act had, and the bytes were given
 * back twice (found by a review: a delete raced against an upload's or a
 * rename's replacing of the same file, 4 in 120 rounds with workers, and the
 * user then stored 26 MiB under a 16 MiB quota). Under the lock a file's
 * count cannot move between that look and the act (a directory's moves with
 * its subdirectories: see removedThrough). A file of several names took
 * none, nor did a move's passing second name (see moveUnderLock), and a
 * removal of another name, or the end of that move, between the count and an
 * act that then found the name free was counted by both (found by a review:
 * a name off the file quota each time). `before` is that last look.
 */
export async function dropThrough(
  ledger: Ledger,
  looked: NodeStat,
  held: { stat(): Promise<NodeStat> },
  /** What the name leads to now. */
  named: () => Promise<NodeStat | null>,
  drop: () => Promise<unknown>,
  busy: NamesBusy = 'wait',
): Promise<{ gone: { bytes: number; names: number }; before: NodeStat; after: NodeStat }> {
  let before = looked;
  // Another change of its names is a few system calls: waited for (unless this one holds a lock already:
  // see moveUnderLock). An in-place write refuses, as before.
  const after = await namesLocked(ledger, nodeKey(looked), busy, async () => {
    const [now, there] = await Promise.all([held.stat(), named()]);
    // The change that held the lock before may have put its own file under the name (an upload's end, a
    // rename over it, which took this same lock): the act would replace that file unmeasured, a name and
    // its bytes left on the usage for good (found by test/stress/one-account.ts: two clients uploading one
    // name at once, each crossing of their ends). Under the lock of the node the name leads to, no other
    // change of that name can come between: so look again, and take that node's lock. A name gone free
    // meanwhile is looked at again too: an act that replaces (rename(2)) would replace unmeasured what
    // another upload's end or rename then puts there, while the act looked again takes a free name
    // without replacing.
    if (there === null || there.dev !== now.dev || there.ino !== now.ino) throw new NameChanged();
    before = now;
    await drop();
    // Measured before the lock goes: once it has, another change of the file's names may take its last one
    // too, and both acts found it gone, each freeing its bytes (found by test/stress/one-account.ts: an
    // upload over one name of a hard-linked file and a rename over its other, the bytes freed twice).
    return held.stat();
  });
  return { gone: removedThrough(before, after), before, after };
}

/**
 * Remove an empty directory (`drop`: the rmdir) that `looked` describes,
 * under its lock (see namesLocked): a rename over it that looked at it first
 * measures, under the same lock, whether its own act took the name away.
 * An rmdir that finds the lock held is refused; a rename waits for it.
 * The name (`named`: what it leads to now) is looked at again under the lock,
 * as dropThrough does: rmdir(2) removes whatever directory it leads to, and
 * another one moved there since the look was removed without its own lock,
 * under which a rename over it had counted it (found by a review: both took
 * its name off the usage). NameChanged then: look again (lookingAgain).
 */
export function removeDirectory(ledger: Ledger, looked: NodeStat, named: () => Promise<NodeStat | null>, drop: () => Promise<void>): Promise<void> {
  return outsideInPlaceWrites(ledger, nodeKey(looked), async () => {
    const there = await named();
    if (there === null || there.dev !== looked.dev || there.ino !== looked.ino) throw new NameChanged();
    await drop();
  });
}

/**
 * Move a file or symlink (`looked`) by `move` (a rename, over a name or to a
 * free one) under the node's lock. A move to a free name is a link at the
 * new name, then the old one's unlink (Location.moveNoReplace): for that
 * moment the node has a name more, and a removal that counted its links then
 * and acted after the unlink, on a name the move had freed, saw the count
 * fall and took a name off the usage for nothing (found by a review). So a
 * move waits while another change of the node's names holds the lock, and
 * is refused while the file is written in place: that upload's record and
 * hooks name the name it had (found by a review: an APPE's file renamed
 * mid-transfer, another put under its name, and the append recorded there).
 *
 * A move over a file takes that file's lock too (dropThrough), while it
 * holds its own: `move` is given 'yield' for it. Found held, the move lets go
 * of its own and begins again after a pause of a few ms, at random, within
 * NAMES_WAIT_MS: two renames crossing (A over B, B over A) each held its
 * source and waited for the other's, and the first to give up failed after
 * 2 s. Now one of them wins, and the other finds its source replaced ("File
 * changed while it was renamed; try again"). A move acts only once it holds
 * both, so a move begun again has changed nothing before. Across nodes a lock
 * another node holds is refused at once ('written'), as before.
 */
export async function moveUnderLock<T>(ledger: Ledger, looked: NodeStat, move: (busy: NamesBusy) => Promise<T>): Promise<T> {
  const until = Date.now() + NAMES_WAIT_MS;
  for (;;) {
    try {
      return await namesLocked(ledger, nodeKey(looked), 'wait', () => move('yield'), until);
    } catch (err) {
      if (!(err instanceof HeldUp)) throw err;
      if (Date.now() >= until) throw changingElsewhere();
    }
    await new Promise((resolve) => setTimeout(resolve, 1 + Math.random() * 20));
  }
}

/** The file whose bytes removing this name frees (see dropFile); null when it frees none. */
export function freeingKey(st: NodeStat): string | null {
  return st.type === 'file' && st.nlink <= 1 ? nodeKey(st) : null;
}

/**
 * Remove a name whose file's bytes go with it (`key`: its dev:ino, null when
 * it frees none: a directory, a symlink, a file with other links) by `drop`:
 * an upload's file put over it where the target could not be held (else see
 * dropThrough, which takes this lock as well). Its size is what it
 * frees, which is what the ledger charged for it only while no upload writes
 * it in place: such an upload's growth is reserved, and charged only at its
 * end, which would then give back, over the quota, what it had never been
 * charged (a user took a file's size off their usage for every round of
 * write, remove, fail). So the file must be nobody's in-place write, as for a
 * truncation: refused with "being written by another transfer" until it is.
 */
export function dropFile<T>(ledger: Ledger, key: string | null, drop: () => Promise<T>): Promise<T> {
  return key === null ? drop() : outsideInPlaceWrites(ledger, key, drop);
}

/**
 * Act on the file `key` (dev:ino) while nobody writes it in place, nor can
 * begin to until the act is done: refused with "being written by another
 * transfer" while one does, or while another change of its names holds it. For an act that an in-place writer must not
 * miss: a removal (dropFile), or a second name (a file with several is never
 * written in place, and the writer looks at its links under this lock).
 */
export function outsideInPlaceWrites<T>(ledger: Ledger, key: string, act: () => Promise<T>, among: NamesAmong = 'nodes'): Promise<T> {
  return namesLocked(ledger, key, 'refuse', act, Date.now() + NAMES_WAIT_MS, among);
}

/** How long a change of a node's names waits for another one to let go of the node (see namesLocked). */
const NAMES_WAIT_MS = 2000;

/**
 * What a change of names does when another brief change holds its node:
 * waits for it, or, when it holds another node's lock itself, yields (see
 * moveUnderLock).
 */
export type NamesBusy = 'wait' | 'yield';

/** The name an act was to replace leads to another node than the one looked at and locked (see dropThrough). */
export class NameChanged extends Error {}

/**
 * `attempt`, a change of names that looks at what it replaces and acts through dropThrough, begun
 * again from its look while the name changed between the two (NameChanged); after NAMES_WAIT_MS
 * refused as changing elsewhere.
 */
export async function lookingAgain<T>(attempt: () => Promise<T>): Promise<T> {
  const until = Date.now() + NAMES_WAIT_MS;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof NameChanged)) throw err;
      if (Date.now() >= until) throw changingElsewhere();
    }
  }
}

/** A change of names that yielded (NamesBusy) found its node held: the change that holds a lock lets go of it and begins again. */
class HeldUp extends Error {}

const changingElsewhere = () => new SluiceError('failure', 'File is being changed by another request; try again');

/**
 * Run `act`, a change of the node `key`'s names, under its lock
 * (Ledger.lockNames); refused while an in-place write holds it; while
 * another change of its names does (`busy`), refused, or waited for (a few
 * system calls; refused after NAMES_WAIT_MS all the same).
 */
async function namesLocked<T>(
  ledger: Ledger,
  key: string,
  busy: 'refuse' | NamesBusy,
  act: () => Promise<T>,
  until = Date.now() + NAMES_WAIT_MS,
  among: NamesAmong = 'nodes',
): Promise<T> {
  for (let pause = 1; ; pause = Math.min(pause * 2, 20)) {
    const got = await ledger.lockNames(key, among);
    if (got === 'locked') break;
    if (got === 'written') throw new SluiceError('failure', 'File is being written by another transfer');
    if (busy === 'yield') throw new HeldUp();
    if (busy === 'refuse' || Date.now() >= until) throw changingElsewhere();
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
  try {
    return await act();
  } finally {
    ledger.unlockInPlace(key);
    // The node's key may come back with a new file at once: its next writer must find it unlocked.
    await ledger.synced();
  }
}

/**
 * One session's use of its user's QuotaLedger, in the process that keeps the
 * ledgers. It remembers what the session holds (reserved bytes, name slots,
 * claims, in-place locks), so that when the session's process dies mid-upload
 * `release()` gives all of it back and the others' room is not lost with it.
 */
export class LedgerHandle implements Ledger {
  private reserved = 0;
  private files = 0;
  private readonly claims = new LazySet<string>();
  private readonly locks = new LazySet<string>();
  /** Those of `locks` taken on this node only (NamesAmong 'node'): not among the nodes, so not given back there. */
  private readonly nodeOnly = new LazySet<string>();
  /** Files this session's downloads hold open, with how many each (see QuotaLedger.reading). */
  private readonly readings = new LazyMap<string, number>();
  private released = false;
  /** The gives of shared locks let go so far (SharedWriteLocks.give), for synced(). */
  private letGo: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ledger: QuotaLedger,
    private readonly onRelease: () => void,
    /** Several nodes: the in-place locks among them (every user's files), and whose handle this is. */
    private readonly shared: { locks: SharedWriteLocks; userId: number } | null = null,
  ) {}

  async checkStart(start: UploadStart): Promise<boolean> {
    const claimed = await this.withRoom(() => this.startNow(start));
    if (start.lock === null) return claimed;
    try {
      await this.lockShared(start.lock);
    } catch (err) {
      if (start.createsFile) this.releaseFile();
      if (claimed && start.claim !== null) this.unclaim(start.claim);
      throw err;
    }
    return claimed;
  }

  /** See QuotaLedger.unlimited: then a worker says the steps below rather than asks them. */
  get unlimited(): boolean {
    return this.ledger.unlimited;
  }

  /**
   * A step a worker took without waiting, told the ledger had no quota: a
   * start with neither claim nor lock, a name slot, a reservation. Applied
   * unchecked, since the worker went on: limits a later login brought (the
   * worker is told, and asks from then on) count it from their next check.
   */
  said(step: SaidStep): void {
    switch (step.method) {
      case 'checkStart': {
        const { createsFile, claim, lock } = step.args[0];
        if (claim !== null || lock !== null) throw new Error('a claim or a lock is asked, not said');
        if (createsFile) this.take(0, 1);
        return;
      }
      case 'holdFile':
        this.take(0, 1);
        return;
      case 'reserve':
        this.take(step.args[0], 0);
        return;
    }
  }

  private take(bytes: number, files: number): void {
    this.ledger.take(bytes, files);
    this.reserved += bytes;
    this.files += files;
  }

  /** The start in one synchronous step, which leaves nothing held when it throws. */
  private startNow({ createsFile, credit, claim, lock }: UploadStart): boolean {
    const claimed = claim !== null && this.claim(claim);
    try {
      this.ledger.checkStart(createsFile, claim === null || claimed ? credit : 0);
      if (createsFile) this.files++;
      if (lock !== null) {
        try {
          this.ledger.lockInPlace(lock);
        } catch (err) {
          if (createsFile) this.releaseFile();
          throw err;
        }
        this.locks.add(lock);
      }
    } catch (err) {
      if (claimed) this.unclaim(claim);
      throw err;
    }
    return claimed;
  }

  async holdFile(): Promise<void> {
    await this.withRoom(() => this.ledger.holdFile());
    this.files++;
  }

  releaseFile(): void {
    if (this.files === 0) return;
    this.files--;
    this.ledger.releaseFile();
  }

  async reserve(bytes: number, credit: number): Promise<void> {
    await this.withRoom(() => this.ledger.reserve(bytes, credit));
    this.reserved += bytes;
  }

  /**
   * Runs `step`, a check that takes what it checked in the same synchronous
   * step; when it falls short and the ledger's room can grow (several
   * nodes), asks for what was missing and runs it again. One node: the first
   * answer stands, as before.
   */
  private async withRoom<T>(step: () => T): Promise<T> {
    for (;;) {
      try {
        return step();
      } catch (err) {
        if (!(await this.ledger.grown(err))) throw err;
      }
    }
  }

  private claim(key: string): boolean {
    if (!this.ledger.claim(key)) return false;
    this.claims.add(key);
    return true;
  }

  unclaim(key: string): void {
    if (this.claims.delete(key)) this.ledger.unclaim(key);
  }

  async lockInPlace(key: string): Promise<void> {
    this.ledger.lockInPlace(key);
    this.locks.add(key);
    await this.lockShared(key);
  }

  async lockNames(key: string, among: NamesAmong = 'nodes'): Promise<NamesLock> {
    const got = this.ledger.lockNames(key);
    if (got !== 'locked') return got;
    this.locks.add(key);
    if (among === 'node') {
      this.nodeOnly.add(key);
      return 'locked';
    }
    try {
      await this.lockShared(key);
    } catch (err) {
      // Another node's: whether a transfer writes it there is not known here, so as if one did.
      if (err instanceof SluiceError && err.kind === 'failure') return 'written';
      throw err;
    }
    return 'locked';
  }

  /** The lock of `key`, held here already, among the nodes too; refused: let go here as well. */
  private async lockShared(key: string): Promise<void> {
    if (!this.shared) return;
    const { locks, userId } = this.shared;
    let taken = false;
    try {
      taken = await locks.take(userId, inodeOfKey(key));
    } finally {
      if (!taken && this.locks.delete(key)) this.ledger.unlockInPlace(key);
    }
    if (!taken) throw new SluiceError('failure', 'File is being written by another transfer');
  }

  unlockInPlace(key: string): void {
    if (!this.locks.delete(key)) return;
    this.ledger.unlockInPlace(key);
    if (this.nodeOnly.delete(key)) return;
    if (this.shared) this.letGo = Promise.all([this.letGo, this.shared.locks.give(this.shared.userId, inodeOfKey(key))]);
  }

  checkCommit(reserved: number, written: number, freed: number, newName: boolean): Promise<void> {
    return this.withRoom(() => this.ledger.checkCommit(reserved, written, freed, newName));
  }

  settle(reserved: number, bytesDelta: number, filesDelta: number): void {
    const dropped = Math.min(reserved, this.reserved);
    this.reserved -= dropped;
    this.ledger.settle(dropped, bytesDelta, filesDelta);
  }

  reading(key: string): void {
    this.readings.set(key, (this.readings.get(key) ?? 0) + 1);
    this.ledger.reading(key);
  }

  doneReading(key: string): void {
    const n = this.readings.get(key) ?? 0;
    if (n === 0) return;
    if (n > 1) this.readings.set(key, n - 1);
    else this.readings.delete(key);
    this.ledger.doneReading(key);
  }

  freed(key: string, bytes: number, names: number): void {
    this.ledger.freed(key, bytes, names);
  }

  heldGone(key: string, bytes: number): void {
    if (this.readings.has(key)) this.ledger.heldGone(key, bytes);
  }

  async usage(): Promise<{ bytes: number; files: number }> {
    return this.ledger.usage;
  }

  /** Steps apply here at once; a shared lock let go waits for the store (on any node, the next writer finds it free). */
  async synced(): Promise<void> {
    await this.letGo;
  }

  /** Everything still held is given back: nothing, when the session ended its transfers first. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.reserved > 0) this.ledger.settle(this.reserved, 0, 0);
    this.reserved = 0;
    for (; this.files > 0; this.files--) this.ledger.releaseFile();
    for (const key of this.claims) this.ledger.unclaim(key);
    for (const key of [...this.locks]) this.unlockInPlace(key);
    for (const [key, n] of this.readings) for (let i = 0; i < n; i++) this.ledger.doneReading(key);
    this.readings.clear();
    this.claims.clear();
    this.onRelease();
  }
}

/**
 * Files (dev:ino) locked: being changed in place (an upload, a truncation),
 * or having their names changed (see NamesLock). One map for every ledger of
 * the process (QuotaBook): two users may share a home, and with a map per
 * user two APPEs of one file by two such users ran at once and interleaved
 * their bytes, and one's whole upload replaced the file under the other's
 * append, whose 226 and audit record then told of bytes no name held (found
 * by a review).
 */
export type InPlaceWriters = Map<string, 'write' | 'names'>;

/**
 * The ledgers of the users with live sessions, kept in this process: made at
 * a user's first session, closed after the last, when the room they held
 * goes back.
 */
export class QuotaBook implements Ledgers {
  private readonly rooms: QuotaRooms;
  private readonly ledgers = new Map<number, BookEntry>();
  private readonly writers: InPlaceWriters = new Map();

  /**
   * `source`: a store's own counters (one node), or the rooms several nodes
   * share, with `writeLocks`, their in-place locks.
   */
  constructor(
    source: QuotaRooms | UsageCounters,
    private readonly writeLocks: SharedWriteLocks | null = null,
  ) {
    this.rooms = 'open' in source ? source : new LocalRooms(source);
  }

  async acquire(account: Account): Promise<Ledger> {
    return this.handle(account);
  }

  /**
   * The same, as the ledger's own type, for the primary answering a worker.
   * The ledger takes `account`'s limits when it is a newer read of the user
   * than any before (QuotaLedger.relimit).
   * `onLimited`: called if the ledger, unlimited now, gets a quota while the
   * handle is open (a worker that says its steps must start to ask).
   */
  async handle(account: Account, onLimited?: () => void): Promise<LedgerHandle> {
    let entry = this.ledgers.get(account.id);
    if (!entry) {
      entry = { ledger: this.rooms.open(account).then((room) => new QuotaLedger(account, room, this.writers)), refs: 0, unlimitedHandles: new Set() };
      this.ledgers.set(account.id, entry);
    }
    entry.refs++;
    const { unlimitedHandles } = entry;
    let ledger: QuotaLedger;
    try {
      ledger = await entry.ledger;
    } catch (err) {
      this.drop(account.id);
      throw err;
    }
    entry.opened = ledger;
    if (ledger.relimit(account) && !ledger.unlimited) {
      for (const tell of unlimitedHandles) tell();
      unlimitedHandles.clear();
    }
    if (onLimited && ledger.unlimited) unlimitedHandles.add(onLimited);
    const release = () => {
      if (onLimited) unlimitedHandles.delete(onLimited);
      this.drop(account.id);
    };
    return new LedgerHandle(ledger, release, this.writeLocks && { locks: this.writeLocks, userId: account.id });
  }

  private drop(userId: number): void {
    const entry = this.ledgers.get(userId);
    if (!entry || --entry.refs > 0) return;
    this.ledgers.delete(userId);
    // At once when it is open: what the close gives back is then among the statements
    // QuotaRooms has made when the release returns (PostgresQuota.settled waits for those).
    if (entry.opened) entry.opened.close();
    else entry.ledger.then((ledger) => ledger.close(), () => undefined);
  }
}

interface BookEntry {
  ledger: Promise<QuotaLedger>;
  /** The ledger, once a handle of it was given out. */
  opened?: QuotaLedger;
  refs: number;
  /** What to call when the ledger gets a quota, for each open handle given out while it had none. */
  unlimitedHandles: Set<() => void>;
}
