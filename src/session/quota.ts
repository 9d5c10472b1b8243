import type { Account, UsageStore } from './account.js';
import { SluiceError } from './errors.js';

/**
 * One ledger per user, shared by all of that user's sessions, so concurrent
 * uploads are summed. Bytes are reserved as they are written and settled into
 * the persisted counters when the operation ends.
 */
export class QuotaLedger {
  private usedBytes: number;
  private usedFiles: number;
  private inflightBytes = 0;
  private inflightFiles = 0;

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

  /** Before an upload starts: is there room for a new file and for any byte at all? */
  checkStart(createsFile: boolean, credit: number): void {
    const { quotaFiles, quotaBytes } = this.account;
    if (createsFile && quotaFiles > 0 && this.usedFiles + this.inflightFiles + 1 > quotaFiles) {
      throw new SluiceError('quota-exceeded');
    }
    if (quotaBytes > 0 && this.usedBytes + this.inflightBytes - credit >= quotaBytes) {
      throw new SluiceError('quota-exceeded');
    }
  }

  /** Reserve a new file slot while its upload runs. */
  holdFile(): void {
    this.inflightFiles++;
  }

  releaseFile(): void {
    this.inflightFiles--;
  }

  /**
   * Reserve `bytes` of growth; `credit` is what the transfer frees when it ends
   * (the size of a file it replaces). Throws quota-exceeded without reserving.
   */
  reserve(bytes: number, credit: number): void {
    const limit = this.account.quotaBytes;
    if (limit > 0 && this.usedBytes + this.inflightBytes + bytes - credit > limit) {
      throw new SluiceError('quota-exceeded');
    }
    this.inflightBytes += bytes;
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

/** Ledgers of the users with live sessions; an entry goes when its last session ends. */
export class QuotaBook {
  private readonly ledgers = new Map<number, { ledger: QuotaLedger; refs: number }>();

  constructor(private readonly store: UsageStore) {}

  acquire(account: Account): QuotaLedger {
    let entry = this.ledgers.get(account.id);
    if (!entry) {
      entry = { ledger: new QuotaLedger(account, this.store), refs: 0 };
      this.ledgers.set(account.id, entry);
    }
    entry.refs++;
    return entry.ledger;
  }

  release(account: Account): void {
    const entry = this.ledgers.get(account.id);
    if (entry && --entry.refs === 0) this.ledgers.delete(account.id);
  }
}
