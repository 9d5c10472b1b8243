import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Protocol } from '../session/account.js';
import type { AuditMetrics, MetricEvent, ProcessSample, ServerMetricsSink } from './events.js';

/** Every protocol, so that each has its series from the start (a new one fails the build until listed). */
const PROTOCOLS = Object.keys({ ftp: true, ftps: true, sftp: true, scp: true } satisfies Record<Protocol, true>) as Protocol[];
const DIRECTIONS = ['upload', 'download'] as const;

/**
 * The reason a failed login is counted under. Read with a token, the
 * failure's own (the audit trail's); read by anyone (admin.metricsPublic),
 * only what its client was told: that the user's sessions were all taken
 * (SECURITY.md, the one exception), or else 'refused'. Found by a review:
 * public counters told `unknown-user` from `bad-password` (which names
 * exist), and `key-required`, `address-not-allowed`, `disabled` and the
 * like, judged only once the password verified, from both: a guess at a
 * key-only account, or from outside an account's allowed addresses, was
 * told right through /metrics.
 */
export function countedReason(reason: string, readByAnyone: boolean): string {
  return !readByAnyone || reason === '' || reason === 'session-limit' ? reason : 'refused';
}

/**
 * The server's numbers, in the one process that keeps them (the primary of
 * workers, or the only process): workers send their MetricEvents here over
 * the IPC channel they already use, so the counts survive a worker's restart
 * and /metrics reads one registry, with no question to any worker.
 */
export class ServerMetrics implements ServerMetricsSink, AuditMetrics {
  readonly registry = new Registry();
  private readonly sessions: Gauge<'protocol'>;
  private readonly logins: Counter<'protocol' | 'result' | 'reason'>;
  private readonly bytes: Counter<'protocol' | 'direction'>;
  private readonly files: Counter<'protocol' | 'direction' | 'result'>;
  private readonly durations: Histogram<'protocol' | 'direction'>;
  private readonly quotaRefusals: Counter<'protocol'>;
  private readonly auditLines: Counter;
  private readonly auditFlush: Histogram;
  private readonly rss: Gauge<'worker'>;
  private readonly cpu: Counter<'worker'>;
  private readonly loopP99: Gauge<'worker'>;
  private readonly loopMax: Gauge<'worker'>;
  /** CPU seconds each worker had at its last sample: the counter grows by the difference. */
  private readonly cpuSeen = new Map<string, number>();

  constructor(
    bansActive: () => Promise<number>,
    /** admin.metricsPublic: anyone may read them (see countedReason). */
    private readonly readByAnyone = false,
  ) {
    const registers = [this.registry];
    this.sessions = new Gauge({ name: 'sluice_sessions', help: 'Logged-in sessions now', labelNames: ['protocol'], registers });
    this.logins = new Counter({
      name: 'sluice_logins_total',
      help: 'Login attempts that reached the authenticator; reason is why a failed one failed',
      labelNames: ['protocol', 'result', 'reason'],
      registers,
    });
    this.bytes = new Counter({ name: 'sluice_transfer_bytes_total', help: 'Bytes transferred, counted when each transfer ends', labelNames: ['protocol', 'direction'], registers });
    this.files = new Counter({
      name: 'sluice_transfer_files_total',
      help: 'Transfers ended, by result (ok, aborted, failed)',
      labelNames: ['protocol', 'direction', 'result'],
      registers,
    });
    this.durations = new Histogram({
      name: 'sluice_transfer_duration_seconds',
      help: 'Duration of each transfer, open to close',
      labelNames: ['protocol', 'direction'],
      buckets: [0.05, 0.25, 1, 5, 30, 120, 600, 3600],
      registers,
    });
    this.quotaRefusals = new Counter({ name: 'sluice_quota_refusals_total', help: 'Operations refused and uploads cut for the quota', labelNames: ['protocol'], registers });
    new Gauge({
      name: 'sluice_bans_active',
      help: 'Addresses banned now',
      registers,
      async collect() {
        this.set(await bansActive());
      },
    });
    this.auditLines = new Counter({ name: 'sluice_audit_lines_total', help: 'Lines written to the audit trail', registers });
    this.auditFlush = new Histogram({
      name: 'sluice_audit_flush_seconds',
      help: 'Time to hand the buffered audit lines to the file',
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers,
    });
    const worker = { labelNames: ['worker'] as const, registers };
    this.rss = new Gauge({ name: 'sluice_process_resident_memory_bytes', help: 'Resident memory of each process (worker 0: the primary, or the only process)', ...worker });
    this.cpu = new Counter({ name: 'sluice_process_cpu_seconds_total', help: 'User and system CPU of each process', ...worker });
    this.loopP99 = new Gauge({ name: 'sluice_event_loop_delay_p99_seconds', help: "99th percentile of each process's event-loop delay over the last 5 s", ...worker });
    this.loopMax = new Gauge({ name: 'sluice_event_loop_delay_max_seconds', help: "Longest event-loop delay of each process over the last 5 s", ...worker });
    // Series that exist before anything happens, so a dashboard shows 0 rather than no data.
    for (const protocol of PROTOCOLS) {
      this.sessions.set({ protocol }, 0);
      this.logins.inc({ protocol, result: 'ok', reason: '' }, 0);
      for (const direction of DIRECTIONS) {
        this.bytes.inc({ protocol, direction }, 0);
        this.files.inc({ protocol, direction, result: 'ok' }, 0);
      }
    }
  }

  count(e: MetricEvent): void {
    switch (e.m) {
      case 'login':
        this.logins.inc({ protocol: e.protocol, result: e.result, reason: countedReason(e.reason, this.readByAnyone) });
        return;
      case 'session':
        this.sessions.inc({ protocol: e.protocol }, e.change);
        return;
      case 'transfer': {
        const labels = { protocol: e.protocol, direction: e.direction };
        this.bytes.inc(labels, e.bytes);
        this.files.inc({ ...labels, result: e.result });
        this.durations.observe(labels, e.seconds);
        return;
      }
      case 'quota-refused':
        this.quotaRefusals.inc({ protocol: e.protocol });
        return;
      default:
        return e satisfies never;
    }
  }

  linesWritten(lines: number): void {
    this.auditLines.inc(lines);
  }

  flushed(seconds: number): void {
    this.auditFlush.observe(seconds);
  }

  sampled(worker: string, s: ProcessSample): void {
    this.rss.set({ worker }, s.rssBytes);
    this.cpu.inc({ worker }, Math.max(0, s.cpuSeconds - (this.cpuSeen.get(worker) ?? 0)));
    this.cpuSeen.set(worker, s.cpuSeconds);
    this.loopP99.set({ worker }, s.loopDelayP99Seconds);
    this.loopMax.set({ worker }, s.loopDelayMaxSeconds);
  }

  /** A restarted worker has a new id: the old one's series end here. */
  workerGone(worker: string): void {
    for (const metric of [this.rss, this.cpu, this.loopP99, this.loopMax]) metric.remove({ worker });
    this.cpuSeen.delete(worker);
  }

  /** The exposition text for /metrics. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
