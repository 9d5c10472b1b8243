import type { Readable } from 'node:stream';
import { SluiceError } from './errors.js';

export type ScanVerdict = { readonly clean: true } | { readonly clean: false; readonly signature: string };

/** A malware scanner (scan/clamd.ts): the verdict on a stream of bytes; throws when it cannot give one. */
export interface Scanner {
  scan(source: Readable, deadline: AbortSignal): Promise<ScanVerdict>;
}

/** Where infected uploads are kept, outside every home (scan/quarantine.ts); returns where it put this one. */
export interface QuarantineStore {
  keep(source: Readable, info: { readonly user: string; readonly path: string }): Promise<string>;
}

/** Quarantine mode (uploads.scan): each complete upload is scanned before it takes its name. */
export interface UploadScanning {
  readonly scanner: Scanner;
  readonly quarantine: QuarantineStore;
  /** How long an upload waits for a verdict, the scanner being down included. */
  readonly timeoutMs: number;
  /** For users without a setting of their own (sluice user set --scan / --no-scan). */
  readonly byDefault: boolean;
}

/** A scanner that cannot be reached is asked again this often until the time is up. */
const RETRY_MS = 1000;

/**
 * The verdict on a file, asked until `timeoutMs` has passed: a scanner that
 * is down (restarting, overloaded) gets its chances, and when the time is up
 * the upload fails closed: it is refused, never let through unscanned.
 */
export async function verdictWithin(scanning: UploadScanning, open: () => Readable): Promise<ScanVerdict> {
  const deadline = AbortSignal.timeout(scanning.timeoutMs);
  let last = 'no answer';
  while (!deadline.aborted) {
    try {
      return await scanning.scanner.scan(open(), deadline);
    } catch (err) {
      last = (err as Error).message;
    }
    if (!deadline.aborted) await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  throw new SluiceError('rejected', 'Upload could not be scanned for malware; try again later', `scanner: ${last}`);
}
