import { X509Certificate } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

/** /readyz turns 503 when the TLS certificate has less than this left. */
export const CERT_MIN_DAYS = 7;
const DAY_MS = 86_400_000;

/**
 * Whether the processes that serve are listening: set by whoever starts them
 * (serve for one process, the primary for its workers), read by /readyz.
 */
export class ServingState {
  private expected = 0;
  private readonly up = new Set<number>();

  /** `count` processes will serve; none is up yet. */
  expect(count: number): void {
    this.expected = count;
    this.up.clear();
  }

  /** Process `id` (a worker's cluster id; 0 for the only process) listens. */
  started(id: number): void {
    this.up.add(id);
  }

  /** Process `id` stopped listening (it exited, or the server is stopping). */
  stopped(id: number): void {
    this.up.delete(id);
  }

  /** Stopping: nothing listens any more, whatever is still up. */
  stopping(): void {
    this.expected = 0;
    this.up.clear();
  }

  /** Why not every listener is up; null when they are. */
  problem(): string | null {
    if (this.expected === 0) return 'not serving (starting or stopping)';
    if (this.up.size < this.expected) return `listeners not up: ${this.up.size} of ${this.expected} serving processes ready`;
    return null;
  }
}

/** Pure: what is wrong with a certificate valid until `validTo`, seen at `now`; null when nothing is. */
export function certificateProblem(validTo: Date, now: Date, minDays = CERT_MIN_DAYS): string | null {
  const left = validTo.getTime() - now.getTime();
  if (Number.isNaN(left)) return 'certificate has no readable expiry date';
  if (left <= 0) return `certificate expired at ${validTo.toISOString()}`;
  if (left <= minDays * DAY_MS) return `certificate expires in ${(left / DAY_MS).toFixed(1)} days (${validTo.toISOString()}), less than ${minDays}`;
  return null;
}

export interface ReadinessSources {
  readonly serving: ServingState;
  /** Rejects when the store cannot answer a trivial query. */
  storeAnswers(): Promise<void>;
  /** The audit trail's file; null when the trail is switched off. */
  readonly auditFile: string | null;
  /** The TLS certificate (PEM) the FTPS listeners serve. */
  readonly certFile: string;
}

export interface Readiness {
  ready: boolean;
  /** Empty when ready. */
  reasons: string[];
}

/** Everything /readyz checks, each reason named; the checks touch the disk asynchronously only. */
export async function readiness(src: ReadinessSources, now = new Date()): Promise<Readiness> {
  const reasons: string[] = [];
  const serving = src.serving.problem();
  if (serving) reasons.push(serving);
  try {
    await src.storeAnswers();
  } catch (err) {
    reasons.push(`store does not answer: ${messageOf(err)}`);
  }
  if (src.auditFile !== null) {
    const audit = await auditProblem(src.auditFile);
    if (audit) reasons.push(audit);
  }
  const cert = await certFileProblem(src.certFile, now);
  if (cert) reasons.push(cert);
  return { ready: reasons.length === 0, reasons };
}

/**
 * The audit file and its directory (where rotation creates the next file)
 * must be writable. A file not there is fine while its directory is: after
 * logrotate moved it, the writer still holds the old one until SIGHUP.
 */
async function auditProblem(file: string): Promise<string | null> {
  const dir = dirname(file);
  try {
    if (!(await fsp.stat(dir)).isDirectory()) return `audit log not writable: ${dir} is not a directory`;
    await fsp.access(dir, constants.W_OK);
  } catch (err) {
    return `audit log not writable: ${codeOf(err)} on ${dir}`;
  }
  try {
    if (!(await fsp.stat(file)).isFile()) return `audit log not writable: ${file} is not a file`;
    await fsp.access(file, constants.W_OK);
  } catch (err) {
    if (codeOf(err) !== 'ENOENT') return `audit log not writable: ${codeOf(err)} on ${file}`;
  }
  return null;
}

async function certFileProblem(file: string, now: Date): Promise<string | null> {
  let validTo: Date;
  try {
    validTo = new Date(new X509Certificate(await fsp.readFile(file)).validTo);
  } catch (err) {
    return `certificate unreadable: ${codeOf(err)}`;
  }
  return certificateProblem(validTo, now);
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : messageOf(err);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
