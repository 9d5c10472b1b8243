import type { TransferResult } from '../audit/events.js';
import type { Protocol } from '../session/account.js';

/**
 * What the serving code counts, said where it happens (the authenticator, the
 * session): plain data, so a worker can send it to the primary as it is, and
 * the code that counts never loads prom-client. A transfer is counted once,
 * when it ends, from the totals it kept anyway: nothing per chunk.
 */
export type MetricEvent =
  /** `reason` is the AuthFailure of a failed login; '' for a good one. */
  | { m: 'login'; protocol: Protocol; result: 'ok' | 'failed'; reason: string }
  /** A session opened (+1) or closed (-1). */
  | { m: 'session'; protocol: Protocol; change: 1 | -1 }
  | { m: 'transfer'; protocol: Protocol; direction: 'upload' | 'download'; bytes: number; seconds: number; result: TransferResult }
  /** An operation refused, or an upload cut, for the user's quota. */
  | { m: 'quota-refused'; protocol: Protocol };

/** Where MetricEvents go: the registry of the process that keeps the server's numbers. */
export interface MetricsSink {
  count(event: MetricEvent): void;
}

/** What the audit writer reports about itself. */
export interface AuditMetrics {
  linesWritten(lines: number): void;
  /** A flush of the buffered lines to the file took this long. */
  flushed(seconds: number): void;
}

/** One process's use of the machine, taken every few seconds (see sampler.ts). */
export interface ProcessSample {
  rssBytes: number;
  /** User and system CPU since the process started. */
  cpuSeconds: number;
  /** Delay of the event loop over the last period: its 99th percentile and its worst. */
  loopDelayP99Seconds: number;
  loopDelayMaxSeconds: number;
}

/** The keeper of the numbers, as the primary's side of each worker feeds it. */
export interface ServerMetricsSink extends MetricsSink {
  /** A process's sample; `worker` is its cluster id, '0' for the primary (or the only process). */
  sampled(worker: string, sample: ProcessSample): void;
  /** The worker has exited: its process series end. */
  workerGone(worker: string): void;
}

/**
 * The keeper where nothing can read the numbers: /metrics is served only on
 * the admin API (admin.listen). Counts nothing, so such a server never loads
 * prom-client (and @opentelemetry/api with it), about 0.1 s of CPU at each start.
 */
export const UNCOUNTED: ServerMetricsSink & AuditMetrics = {
  count: () => undefined,
  sampled: () => undefined,
  workerGone: () => undefined,
  linesWritten: () => undefined,
  flushed: () => undefined,
};
