import type { Protocol } from '../session/account.js';
import type { HashAlgorithm } from '../session/checksum.js';

/** Where a client came in: a file protocol, or the admin API (which scores failed tokens with the rest). */
export type Service = Protocol | 'admin';

/** Who did it and from where: carried by every audit event. */
export interface Actor {
  readonly session: string;
  readonly user: string;
  readonly protocol: Service;
  readonly ip: string;
  readonly port: number;
}

/** Every `result` a transfer record can carry: the one list the CLI's and the admin API's filters take. */
export const TRANSFER_RESULTS = ['ok', 'aborted', 'failed'] as const;
export type TransferResult = (typeof TRANSFER_RESULTS)[number];

/**
 * What lost its name, or its bytes, to a rename or an upload: measured through a hold of the node
 * looked at, after the act, so it is what the act really replaced (see README, Audit trail).
 */
export interface Replaced {
  /** Its size when it lost the name (a symlink: its text's length). */
  size: number;
  /** Its SHA-256, only where the server knew it without a read: the hash of a whole upload this process recorded, the file unchanged since. */
  sha256?: string;
  /** What it was, when not a regular file. */
  type?: 'dir' | 'symlink' | 'other';
  /** Names it still has elsewhere (hard links): its bytes were not destroyed. */
  links?: number;
}

/**
 * A rename's or an atomic upload's record, when the target held a node when looked at but that node
 * lost no name to the act: another request moved or removed it in between, and what the name held
 * at the act (nothing, or a node put there meanwhile) was replaced unmeasured.
 */
export type ReplacedUnknown = true;

export type AuditEvent =
  | { event: 'login'; method: 'password' | 'publickey' }
  /** `email`: what an anonymous FTP client gave as its password, as it gave it (bounded); never a credential. */
  | { event: 'login'; method: 'anonymous'; email: string }
  | { event: 'login-failed'; method: 'password' | 'publickey'; reason: string }
  /** reason: why the server ended the session (an administrator, a stop); absent when the client ended it. */
  | { event: 'logout'; duration_ms: number; reason?: string }
  | {
      event: 'upload' | 'download';
      /** Where the file is: an upload's where it ended, when its directory was moved since the open. */
      path: string;
      /** An upload's path at its open, when its directory was moved meanwhile. */
      path_at_open?: string;
      bytes: number;
      size: number;
      offset: number;
      resumed: boolean;
      started: string;
      duration_ms: number;
      result: TransferResult;
      reason?: string;
      sha256: string | null;
      /** Whole file after a resumed upload (audit.hashResumedUploads). */
      file_sha256?: string;
      type: 'ascii' | 'binary';
      /** The bytes came from these files by a server-side copy (SFTP copy-data), not from the client. */
      copied_from?: string[];
      /** The bytes read went to these files by a server-side copy, not to the client. */
      copied_to?: string[];
      /** How many more files than the first MAX_COPY_PATHS the copies named, not listed. */
      copied_others?: number;
      /**
       * An upload's: the file it replaced whole (an atomic upload put over it, or emptied in place at
       * the open, which destroys its bytes whatever the upload's result).
       */
      replaced?: Replaced;
      replaced_unknown?: ReplacedUnknown;
      /** An upload's into an existing file it did not empty (resume, append, SFTP without TRUNC): the file's size before. */
      was?: number;
      /** A scanned upload's (uploads.scan, user set --scan): clamd said clean, found malware, or gave no verdict; none: not scanned. */
      scan?: 'clean' | 'infected' | 'unscanned';
    }
  /** `removed`: the node the delete took the name of, measured as a rename's `replaced` (see Replaced). */
  | { event: 'delete'; path: string; removed?: Replaced }
  | { event: 'mkdir' | 'rmdir'; path: string }
  /** `replaced`: the node the rename took the name of (see Replaced). */
  | { event: 'rename'; from: string; to: string; replaced?: Replaced; replaced_unknown?: ReplacedUnknown }
  | { event: 'chmod'; path: string; mode: string }
  | { event: 'chtimes'; path: string }
  /** A file cut or extended in place by its name (SFTP SETSTAT size): its size before (`was`) and after. */
  | { event: 'truncate'; path: string; size: number; was: number }
  | { event: 'symlink' | 'hardlink'; path: string; target: string }
  /**
   * SHA-256 of bytes [offset, end) of a file given to the client (FTP HASH, SFTP check-file), in `blocks`
   * hashes: the hash of a few bytes is as good as the bytes, so this is a read of the file as a download is.
   * `from_record`: answered from the last upload's record without a read.
   */
  | { event: 'checksum'; path: string; algorithm: HashAlgorithm; offset: number; end: number; blocks: number; from_record: boolean }
  | { event: 'denied'; operation: string; path: string; reason: 'permission' | 'outside-home' }
  | { event: 'quota-exceeded'; path: string }
  /**
   * The scanner found malware in an upload: it did not take its name. `kept`: a copy is at `file`,
   * outside the home; otherwise `why` not (the quarantine's limits, a failed write).
   */
  | { event: 'quarantined'; path: string; signature: string; size: number; sha256: string | null; kept: boolean; file?: string; why?: string }
  /**
   * The defender banned `address`, the actor's address or its IPv6 network
   * (limits.ipv6Prefix); once per ban, refused connections are not recorded.
   */
  | { event: 'ban'; address: string; until: string; seconds: number; count: number; offence: string }
  /** Failed logins from the actor's address (an IPv6 network: limits.ipv6Prefix) not recorded one by one within the window, counted. */
  | { event: 'login-failed-repeated'; count: number; window_s: number };

/** Where the shared layer sends its events; audit/log.ts is the writer. */
export interface AuditSink {
  record(actor: Actor, event: AuditEvent): void;
}

/** Events of the server itself, with no session behind them. */
export type SystemEvent =
  | { event: 'upload-temps-removed'; home: string; count: number; bytes: number }
  /** The start-up recount found a user's stored usage differing from the disk and stored the disk's. */
  | { event: 'usage-recounted'; user: string; home: string; oldBytes: number; oldFiles: number; bytes: number; files: number }
  /**
   * One request to the admin API, answered or refused: `token` the name of the
   * bearer token, `local-socket` over the unix socket, null when none was valid;
   * `path` with credential-like query values redacted (admin/request-audit.ts);
   * `client_left` when the connection closed before the reply was written:
   * the client closed or reset it, or the server did (a pipelined request
   * behind one refused for its body); `status` is then what the server set,
   * which the client never saw.
   */
  | { event: 'admin'; token: string | null; ip: string; method: string; path: string; status: number; client_left?: true }
  /** A configured hook (hooks.actions) failed or was dropped; what triggered it, and why. */
  | { event: 'hook-failed'; hook: string; trigger: string; user: string; path: string; reason: string };

export interface SystemAuditSink {
  system(event: SystemEvent): void;
}
