import type { Replaced, TransferResult } from '../audit/events.js';

/** What a finished transfer reports to its session for the audit trail. */
export interface TransferRecord {
  direction: 'upload' | 'download';
  /** Where the file is: an upload's where it ended, if its directory moved since the open (see openedAs). */
  path: string;
  /** An upload's path at its open, when its directory was moved meanwhile and `path` says where it went. */
  openedAs?: string;
  bytes: number;
  size: number;
  offset: number;
  started: Date;
  result: TransferResult;
  reason?: string;
  /** The bytes transferred, in file order; null when not computed or not computable. */
  sha256: string | null;
  /** The whole file after a resumed upload, when configured. */
  fileSha256?: string;
  convertedLineEndings: boolean;
  /**
   * An upload's file as it ended under its name (dev:ino and ctime), for UploadReceipts; none: keep no receipt.
   * Given only where a hash stands for the file: a staged file's bytes sent, or fileSha256 read from it.
   */
  node?: { key: string; ctimeMs: number };
  /** An upload's: the file it replaced whole; 'unknown' when the one looked at was not what its rename replaced (see replacedThrough). */
  replaced?: Replaced | 'unknown';
  /** An upload's into an existing file it did not empty: that file's size at the open. */
  was?: number;
  /**
   * A scanned upload's (none: this upload is not scanned): the verdict it took its name on (`clean`),
   * malware found (`infected`), or no verdict (`unscanned`: the scanner down or refusing, the upload ended first).
   */
  scan?: 'clean' | 'infected' | 'unscanned';
  /** The scanner found malware: kept in quarantine at `file`, or not (`why`). */
  quarantined?: { signature: string; size: number; sha256: string | null; kept: boolean; file?: string; why?: string };
}
