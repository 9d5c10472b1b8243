import type { Account, UsageStore } from './account.js';
import { SluiceError } from './errors.js';
import { PerUser } from './per-user.js';

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
 */
export class QuotaLedger {
  private usedBytes: number;
  private usedFiles: number;
  private inflightBytes = 0;
  private inflightFiles = 0;
  /** Files (dev:ino) whose size an overwrite in flight counts on freeing: one claimant each. */
  private readonly claims = new Set<string>();
  /** Files (dev:ino) being changed in place, by an upload or a truncation. */
  private readonly writers = new Set<string>();

  constructor(
    private readonly account: Account,
    private readonly store: UsageStore,
  ) {
    const u = store.usage(account.id);
    this.usedBytes = u.bytes;
    this.usedFiles = u.files;
  }

  get usage(): { bytes: number; files: number } {
    return { bytes: this.usedBytes, files: this.usedFiles };
  }

  /**
   * Before an upload starts: is there room for any byte at all, counting what
   * replacing the old file frees, and for a new name? A new name's slot is
   * held from here; the upload releases it when it ends.
   */
  checkStart(createsFile: boolean, credit: number): void {
    const { quotaBytes } = this.account;
    if (quotaBytes > 0 && this.usedBytes + this.inflightBytes - credit >= quotaBytes) {
      throw new SluiceError('quota-exceeded');
    }
    if (createsFile) this.holdFile();
  }

  /** Reserve a slot for a new name while it is being made; throws quota-exceeded when none is left. */
  holdFile(): void {
    const limit = this.account.quotaFiles;
    if (limit > 0 && this.usedFiles + this.inflightFiles + 1 > limit) throw new SluiceError('quota-exceeded');
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
    const limit = this.account.quotaBytes;
    if (limit > 0 && this.usedBytes + this.inflightBytes + bytes - credit > limit) {
      throw new SluiceError('quota-exceeded');
    }
    this.inflightBytes += bytes;
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
    this.writers.add(key);
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
    const { quotaBytes, quotaFiles } = this.account;
    if (quotaBytes > 0 && this.usedBytes + this.inflightBytes - reserved + written - freed > quotaBytes) {
      throw new SluiceError('quota-exceeded');
    }
    if (newName && quotaFiles > 0 && this.usedFiles + this.inflightFiles + 1 > quotaFiles) {
      throw new SluiceError('quota-exceeded');
    }
  }

  /** End of an operation: drop its reservation and record the real change. */
  settle(reserved: number, bytesDelta: number, filesDelta: number): void {
    this.inflightBytes -= reserved;
    if (bytesDelta === 0 && filesDelta === 0) return;
    this.usedBytes = Math.max(0, this.usedBytes + bytesDelta);
    this.usedFiles = Math.max(0, this.usedFiles + filesDelta);
    this.store.addUsage(this.account.id, bytesDelta, filesDelta);
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
  unlockInPlace(key: string): void;
  checkCommit(reserved: number, written: number, freed: number, newName: boolean): Promise<void>;
  settle(reserved: number, bytesDelta: number, filesDelta: number): void;
  usage(): Promise<{ bytes: number; files: number }>;
  /** Resolves once everything said before has reached the ledger. */
  synced(): Promise<void>;
  /** The session has ended. */
  release(): void;
}

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

/**
 * One session's use of its user's QuotaLedger, in the process that keeps the
 * ledgers. It remembers what the session holds (reserved bytes, name slots,
 * claims, in-place locks), so that when the session's process dies mid-upload
 * `release()` gives all of it back and the others' room is not lost with it.
 */
export class LedgerHandle implements Ledger {
  private reserved = 0;
  private files = 0;
  private readonly claims = new Set<string>();
  private readonly locks = new Set<string>();
  private released = false;

  constructor(
    private readonly ledger: QuotaLedger,
    private readonly onRelease: () => void,
  ) {}

  async checkStart({ createsFile, credit, claim, lock }: UploadStart): Promise<boolean> {
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
    this.ledger.holdFile();
    this.files++;
  }

  releaseFile(): void {
    if (this.files === 0) return;
    this.files--;
    this.ledger.releaseFile();
  }

  async reserve(bytes: number, credit: number): Promise<void> {
    this.ledger.reserve(bytes, credit);
    this.reserved += bytes;
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
  }

  unlockInPlace(key: string): void {
    if (this.locks.delete(key)) this.ledger.unlockInPlace(key);
  }

  async checkCommit(reserved: number, written: number, freed: number, newName: boolean): Promise<void> {
    this.ledger.checkCommit(reserved, written, freed, newName);
  }

  settle(reserved: number, bytesDelta: number, filesDelta: number): void {
    const dropped = Math.min(reserved, this.reserved);
    this.reserved -= dropped;
    this.ledger.settle(dropped, bytesDelta, filesDelta);
  }

  async usage(): Promise<{ bytes: number; files: number }> {
    return this.ledger.usage;
  }

  async synced(): Promise<void> {}

  /** Everything still held is given back: nothing, when the session ended its transfers first. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.reserved > 0) this.ledger.settle(this.reserved, 0, 0);
    this.reserved = 0;
    for (; this.files > 0; this.files--) this.ledger.releaseFile();
    for (const key of this.claims) this.ledger.unclaim(key);
    for (const key of this.locks) this.ledger.unlockInPlace(key);
    this.claims.clear();
    this.locks.clear();
    this.onRelease();
  }
}

/** The ledgers of the users with live sessions, kept in this process. */
export class QuotaBook extends PerUser<QuotaLedger> implements Ledgers {
  constructor(store: UsageStore) {
    super((account) => new QuotaLedger(account, store));
  }

  async acquire(account: Account): Promise<Ledger> {
    return this.handle(account);
  }

  /** The same, synchronously, for the primary answering a worker. */
  handle(account: Account): LedgerHandle {
    return new LedgerHandle(this.take(account), () => this.drop(account));
  }
}
