import type { PermissionRules } from './permissions.js';

export type Protocol = 'ftp' | 'ftps' | 'sftp' | 'scp';
/**
 * What a user may be allowed to log in with. scp rides an SSH login like
 * SFTP: a user allowed `sftp` may use either (config sftp.scp decides for
 * the server); the audit records say which.
 */
export const PROTOCOLS: readonly Protocol[] = ['ftp', 'ftps', 'sftp'];
/** What audit records may name. */
export const AUDITED_PROTOCOLS: readonly string[] = [...PROTOCOLS, 'scp'];

/**
 * The stored account anonymous FTP logins use (users/anonymous.ts makes it;
 * no other user may take the name): the audit trail names them by it.
 */
export const ANONYMOUS = 'anonymous';

/**
 * Whose share a client takes of what is shared out per user (scan turns,
 * hook queue places): its user's; but anonymous logins, who share one stored
 * name, each their source's (an address, or an IPv6 network of
 * limits.ipv6Prefix bits, as every per-client limit counts them): under the
 * one name, one client held the share of all (found by reviews). Whether a
 * client is anonymous is told by how it logged in, never by its name: a user
 * named `anonymous` before the name was reserved, logging in with its own
 * password, took a share per address (found by a review).
 */
export function shareOf(user: string, anonymous: boolean, source: string): string {
  return anonymous ? `${ANONYMOUS} ${source}` : user;
}

/** How a login proved itself (`anonymous`: FTP's anonymous user, whose password is not checked). */
export type LoginMethod = 'password' | 'publickey' | 'anonymous';

/** What the shared layer knows of a logged-in user: no secrets, no storage details. */
export interface Account {
  readonly id: number;
  readonly name: string;
  /** Real path of the home directory. */
  readonly home: string;
  readonly permissions: PermissionRules;
  /** 0 means unlimited. */
  readonly quotaBytes: number;
  readonly quotaFiles: number;
  /** Bytes per second, each session; null: the server's default, 0: none. */
  readonly rateUp: number | null;
  readonly rateDown: number | null;
  /** Uploads scanned for malware; null: the server's uploads.scan. */
  readonly scan: boolean | null;
  /**
   * Files move only under TLS (the account's --require-tls, or protocols
   * without plain `ftp`): over FTP the login needs TLS (the authenticator
   * checks it), and so does every data connection (PROT P), whatever
   * ftp.tls lets other users do.
   */
  readonly requireTls: boolean;
  /**
   * When the user's record was last changed (ms since the epoch, as the
   * store keeps it): of two reads of the same user, the later revision is
   * the newer one, whichever was made first.
   */
  readonly revision: number;
  /**
   * When this process read the user (performance.now()): a change of its
   * permissions told to this process after that reaches the session opened
   * from this read, though it was not registered yet (LiveRegistry.catchUp).
   */
  readonly readAt: number;
  /**
   * How this login proved itself: a rule set later (requireKey) ends the
   * live sessions, and refuses the new SSH channels, of logins it would
   * refuse now.
   */
  readonly method: LoginMethod;
  /**
   * The fingerprint of the key a public-key login proved; null for other
   * logins. A session of the login opens only while the user still has it
   * (Authenticator.refreshed).
   */
  readonly key: string | null;
  /**
   * A password login's mark of the stored password hash its password
   * verified against (a short digest, not the hash); null for other logins.
   * A session of the login opens only while the user's password is still
   * that one (Authenticator.refreshed): a password changed during the login,
   * or before a later SSH channel of it, refuses the session.
   */
  readonly passwordMark: string | null;
}

/** The stored usage counters as the start-up recount reads and replaces them, wherever the store is. */
export interface StoredUsage {
  usage(userId: number): Promise<{ bytes: number; files: number }>;
  setUsage(userId: number, bytes: number, files: number): Promise<void>;
}

/** Persisted usage counters answered at once, for the ledgers of a single-node store (SQLite). */
export interface UsageStore {
  usage(userId: number): { bytes: number; files: number };
  addUsage(userId: number, bytes: number, files: number): void;
  /** Replace the counters with a recount of the disk. */
  setUsage(userId: number, bytes: number, files: number): void;
}
