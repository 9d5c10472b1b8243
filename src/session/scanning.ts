import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from './errors.js';
import type { TurnQueue } from './turns.js';

export type ScanVerdict = { readonly clean: true } | { readonly clean: false; readonly signature: string };

/**
 * The scanner answered, and its answer is that it will not give a verdict on
 * these bytes (clamd's "... ERROR" replies, such as its size limit): asking
 * again would stream the same file to the same refusal, so it is final.
 */
export class ScanRefused extends Error {
  constructor(
    /** Why, for the client and the audit trail ("too large to scan"). */
    readonly why: string,
    /** The scanner's own words, for the log. */
    readonly reply: string,
  ) {
    super(`${why} (${reply})`);
    this.name = 'ScanRefused';
  }
}

/**
 * A malware scanner (scan/clamd.ts): the verdict on a stream of bytes; throws when it cannot give one,
 * ScanRefused when it answered that it will not.
 */
export interface Scanner {
  scan(source: Readable, deadline: AbortSignal): Promise<ScanVerdict>;
}

/**
 * What the quarantine did with an infected upload: kept at `file`, or not kept and why; `sha256` of its bytes
 * either way. `fault`: not kept for a fault of the quarantine's directories, not its limits (for the server log too).
 */
export type Kept =
  | { readonly kept: true; readonly file: string; readonly sha256: string }
  | { readonly kept: false; readonly why: string; readonly sha256: string; readonly fault?: true };

/**
 * Where infected uploads are kept, outside every home (scan/quarantine.ts), within its limits.
 * `open` gives the upload's bytes (again, when needed); throws when keeping failed.
 * `userId`: the user's id, never given to another user (a name is, once its user is removed).
 */
export interface QuarantineStore {
  keep(open: () => Readable, info: { readonly user: string; readonly userId: number; readonly path: string; readonly size: number }): Promise<Kept>;
}

/**
 * How many of one user's uploads may be at the scanner at once; the rest
 * wait their turn (Turns), in the order they came. clamd scans a few files
 * at once (its MaxThreads, 10 by default) and queues the rest in the order
 * they connect: found by an adversarial review, one user's many uploads at
 * once (files slow to scan, archives clamd unpacks) took every place there,
 * and another user's upload waited behind them past uploads.scanTimeout and
 * was refused. Now a user's flood waits in front of the scanner, against its
 * own uploads' deadlines, and others go past it. Anonymous FTP clients, who
 * share one stored name, take turns per source (an address, or an IPv6
 * network of limits.ipv6Prefix bits): see Session's upload.
 */
export const SCANS_PER_USER = 2;

/** Quarantine mode (uploads.scan): each complete upload is scanned before it takes its name. */
export interface UploadScanning {
  readonly scanner: Scanner;
  readonly quarantine: QuarantineStore;
  /** How long an upload waits for a verdict, the scanner being down and its turn (turns) included. */
  readonly timeoutMs: number;
  /** Each user's turns at the scanner, so that one user's many uploads do not keep others' from it. */
  readonly turns: TurnQueue;
  /** For users without a setting of their own (sluice user set --scan / --no-scan). */
  readonly byDefault: boolean;
}

/**
 * Why a user's own `--scan` scans nothing on a server with `uploads` as
 * configured; null when it does. Scanning needs a scanner (a clamd address):
 * without one the setting is kept but no upload is scanned (found by a
 * review: `user set --scan` passed in silence, and malware landed).
 */
export function scanSettingIdle(uploads: { readonly clamdSocket: string; readonly clamdHost: string }, setting: boolean | null): string | null {
  if (setting !== true || uploads.clamdSocket !== '' || uploads.clamdHost !== '') return null;
  return 'no scanner is configured (uploads.clamdSocket or uploads.clamdHost), so its uploads are not scanned';
}

/** Whether a session of a user whose own setting is `setting` (null: none) scans its uploads here. */
export function scansWith(scanning: UploadScanning | null, setting: boolean | null): boolean {
  return scanning !== null && (setting ?? scanning.byDefault);
}

/** A scanner that cannot be reached is asked again this often until the time is up. */
const RETRY_MS = 1000;

/**
 * The verdict on a file, asked until `timeoutMs` has passed: a scanner that
 * is down (restarting, overloaded) gets its chances, and when the time is up
 * the upload fails closed: it is refused, never let through unscanned. A
 * scanner that refused the file (ScanRefused) is not asked again: the upload
 * fails at once, with the reason. `stop` (the upload aborted: the drain's
 * timeout, a second signal, the session's end) ends the wait at once: it then
 * throws `stop.reason`, no verdict and no scanner error (found by a review:
 * a stop's drain waited for clamd, then let the file in and recorded it ok).
 * The wait for a turn at the scanner among `turns`' uploads (SCANS_PER_USER) counts in it.
 */
export async function verdictWithin(scanning: UploadScanning, turns: string, open: () => Readable, stop?: AbortSignal): Promise<ScanVerdict> {
  const timeout = AbortSignal.timeout(scanning.timeoutMs);
  const deadline = stop ? AbortSignal.any([timeout, stop]) : timeout;
  const release = await scanning.turns.take(turns, deadline).catch(() => null);
  try {
    return await askWithin(scanning, open, deadline, stop, release === null ? "its turn did not come: the user's other uploads were being scanned" : 'no answer');
  } finally {
    release?.();
  }
}

/** verdictWithin's asking, its turn taken: `last`, what is said should no answer come. */
async function askWithin(scanning: UploadScanning, open: () => Readable, deadline: AbortSignal, stop: AbortSignal | undefined, last: string): Promise<ScanVerdict> {
  while (!deadline.aborted) {
    try {
      const verdict = await scanning.scanner.scan(open(), deadline);
      // An answer that came with the stop is not acted on: the upload is ending.
      if (stop?.aborted) break;
      return verdict;
    } catch (err) {
      if (stop?.aborted) break;
      if (err instanceof ScanRefused) {
        throw new SluiceError('rejected', `Upload could not be scanned for malware: ${err.why}`, `scanner refused: ${err.message}`);
      }
      last = (err as Error).message;
    }
    if (!deadline.aborted) await sleep(RETRY_MS, undefined, { signal: deadline }).catch(() => undefined);
  }
  if (stop?.aborted) throw stop.reason;
  throw new SluiceError('rejected', 'Upload could not be scanned for malware; try again later', `scanner: ${last}`);
}
