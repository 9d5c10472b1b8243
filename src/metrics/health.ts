import { X509Certificate } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { CERT_MIN_DAYS, certificateProblem } from '../certs/expiry.js';
import { readRegularFile } from '../regular-file.js';
import { dirname } from 'node:path';
import type { Logger } from 'pino';

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

  /** Nothing is to listen: starting, or stopping. */
  get starting(): boolean {
    return this.expected === 0;
  }

  /** Why not every listener is up; null when they are. */
  problem(): string | null {
    if (this.expected === 0) return 'not serving (starting or stopping)';
    if (this.up.size < this.expected) return `listeners not up: ${this.up.size} of ${this.expected} serving processes ready`;
    return null;
  }
}

export interface ReadinessSources {
  readonly serving: ServingState;
  /** Rejects when the store cannot answer a trivial query. */
  storeAnswers(): Promise<void>;
  /** The audit trail's file; null when the trail is switched off. */
  readonly auditFile: string | null;
  /** The TLS certificate (PEM) the FTPS listeners serve. */
  readonly certFile: string;
  /** Where the details behind the public reasons go (paths, error text); none: nowhere. */
  readonly details?: ReadinessLog;
}

/**
 * What /readyz may say to anyone: it needs no token, so a reason is one of
 * these fixed labels, never a path or an error's text (those go to the
 * server log, see ReadinessLog).
 */
export const READINESS_REASONS = [
  'not serving (starting or stopping)',
  'listeners not up',
  'store unavailable',
  'audit log not writable',
  'certificate unreadable',
  'certificate expired',
  `certificate expires within ${CERT_MIN_DAYS} days`,
] as const;
export type ReadinessReason = (typeof READINESS_REASONS)[number];

/** A reason, and what the operator needs to mend it. */
export interface Problem {
  readonly reason: ReadinessReason;
  readonly detail: string;
  /**
   * Said, but the node stays ready: a certificate close to its end still
   * serves, and every node sharing it would leave the balancer's rotation at
   * the same moment (found by an operator's review: an expiry warning became
   * an outage a week early).
   */
  readonly warning?: true;
}

export interface Readiness {
  ready: boolean;
  /** What makes the node not ready; empty when ready. */
  reasons: ReadinessReason[];
  /** What needs mending soon, ready or not (a certificate that expires within CERT_MIN_DAYS). */
  warnings: ReadinessReason[];
}

/**
 * Logs the details of what /readyz finds wrong each time they change, not at
 * every probe (a load balancer asks every few seconds), and once when all is
 * well again.
 */
export class ReadinessLog {
  private last: readonly Problem[] = [];

  constructor(private readonly log: Pick<Logger, 'warn' | 'info'>) {}

  note(problems: readonly Problem[]): void {
    const key = (list: readonly Problem[]) => JSON.stringify(list.map((p) => p.detail));
    if (key(problems) === key(this.last)) return;
    this.last = problems;
    if (problems.length === 0) return this.log.info('ready: every /readyz check passes again');
    const heading = problems.some((p) => !p.warning) ? 'not ready' : 'ready, but';
    this.log.warn({ problems: problems.map((p) => p.detail) }, `${heading}: ${problems.map((p) => p.detail).join('; ')}`);
  }
}

/** Everything /readyz checks, each reason a fixed label; the checks touch the disk asynchronously only. */
export async function readiness(src: ReadinessSources, now = new Date()): Promise<Readiness> {
  const problems: Problem[] = [];
  const serving = src.serving.problem();
  if (serving) problems.push({ reason: src.serving.starting ? 'not serving (starting or stopping)' : 'listeners not up', detail: serving });
  try {
    await src.storeAnswers();
  } catch (err) {
    problems.push({ reason: 'store unavailable', detail: `store does not answer: ${messageOf(err)}` });
  }
  if (src.auditFile !== null) {
    const audit = await auditProblem(src.auditFile);
    if (audit) problems.push({ reason: 'audit log not writable', detail: audit });
  }
  const cert = await certFileProblem(src.certFile, now);
  if (cert) problems.push(cert);
  src.details?.note(problems);
  const reasons = problems.filter((p) => !p.warning).map((p) => p.reason);
  return { ready: reasons.length === 0, reasons, warnings: problems.filter((p) => p.warning).map((p) => p.reason) };
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

async function certFileProblem(file: string, now: Date): Promise<Problem | null> {
  let validTo: Date;
  try {
    validTo = new Date(new X509Certificate(await readRegularFile(file)).validTo);
  } catch (err) {
    return { reason: 'certificate unreadable', detail: `certificate unreadable: ${codeOf(err)} on ${file}` };
  }
  const problem = certificateProblem(validTo, now);
  if (problem === null) return null;
  // Details name the date, never the days left: they change when the certificate does, not at every probe.
  if (Number.isNaN(validTo.getTime())) return { reason: 'certificate unreadable', detail: `certificate ${file}: ${problem}` };
  const at = validTo.toISOString();
  if (validTo.getTime() <= now.getTime()) return { reason: 'certificate expired', detail: `certificate ${file} expired at ${at}` };
  return { reason: `certificate expires within ${CERT_MIN_DAYS} days`, detail: `certificate ${file} expires at ${at}, within ${CERT_MIN_DAYS} days`, warning: true };
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : messageOf(err);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
