/**
 * The contract between the bench's runner (run.ts) and its workloads
 * (workloads/*.ts, sessions.ts): a workload measures one thing against one
 * running server and returns what it saw; the runner starts the servers,
 * interleaves the runs, samples each server's CPU and memory around every run,
 * takes medians, prints the table and judges the goals of issues #13 and #14.
 */

export type Protocol = 'ftp' | 'ftps' | 'sftp';
export type PeerName = 'vsftpd' | 'openssh';
/** What a workload's main figure counts; MB/s and files/s are computed by the runner from bytes/files and seconds. */
export type Unit = 'MB/s' | 'files/s' | 'MiB' | 'ms' | 'logins/s' | 'sessions';

/** One account on one server, as a client reaches it. */
export interface Endpoint {
  port: number;
  user: string;
  /** Password login (FTP, and SFTP on sluice); OpenSSH takes only BenchContext.sshKey. */
  password: string | null;
  /** The account's writable directory as the client names it ('/' on sluice and vsftpd, an absolute path on OpenSSH). */
  remoteDir: string;
  /** The same directory on this machine's disk: sources to download are placed and uploads checked there. */
  localDir: string;
}

/** The server process's resources so far (CPU) or now (memory). */
export interface Usage {
  /** User + system CPU of the server and of its children, reaped ones included (OpenSSH and vsftpd fork per connection). */
  cpuSeconds: number;
  /** CPU of the main (event-loop) thread; sluice only. */
  loopCpuSeconds: number | null;
  /** Resident memory now of the server and its live children. */
  rssMiB: number;
}

/** The row of the default sluice, and of the one with the audit off. */
export const SLUICE = 'sluice';
export const AUDIT_OFF = 'sluice audit off';

/** A running server under comparison; the runner owns its start and stop. */
export interface Target {
  /** Row label: SLUICE, AUDIT_OFF, a SluiceOptions.name, 'vsftpd', 'OpenSSH'. */
  name: string;
  kind: 'sluice' | PeerName;
  /** The listener process (sshd -D, vsftpd, or sluice's primary, the parent of its workers). */
  pid: number;
  /** ftp and ftps share one port on both FTP servers: ftps is explicit (AUTH TLS) and requires TLS. */
  endpoints: Partial<Record<Protocol, Endpoint>>;
  usage(): Usage;
}

/** What `startSluice` accepts: config deep-merged over the bench's base (default config, plain FTP allowed). */
export interface SluiceOptions {
  name: string;
  config?: Record<string, unknown>;
  /** Added to the server's environment, e.g. SLUICE_WORKERS. */
  env?: Record<string, string>;
  /** Extra accounts; every account also accepts BenchContext.sshKey. */
  users?: { name: string; password: string }[];
  /** Further `sluice user add` options for every account, the bench user included, e.g. a quota. */
  userArgs?: string[];
  /** On a PostgreSQL of its own (SLUICE_STORE_URL), started with it and stopped after it, instead of the SQLite file. */
  postgres?: boolean;
}

export interface BenchContext {
  /** Scratch directory of this bench run, removed at exit; a workload makes its own subdirectory. */
  work: string;
  /** Private key every SFTP endpoint accepts. */
  sshKey: string;
  /** curl binary ($SLUICE_BENCH_CURL, default `curl`). */
  curl: string;
  /** Bytes of the large file (--size). */
  size: number;
  /** Number of small files (--files). */
  files: number;
  quick: boolean;
  /** A random file of `size` bytes, made once per bench run, and its SHA-256. */
  bigFile(): Promise<{ path: string; sha256: string }>;
  /** A directory of `files` random 4 KiB files named f0000, f0001, ..., made once per bench run. */
  smallTree(): Promise<string>;
  /** A name not used before in this bench run, for a fresh remote directory or local file. */
  fresh(prefix: string): string;
  /** A further sluice for a workload that needs other settings; stopped when the bench ends (or by the returned stop). */
  startSluice(options: SluiceOptions): Promise<Target & { stop(): Promise<void> }>;
  /** A progress line (the table comes at the end). */
  log(line: string): void;
}

/** What one measured run saw. */
export interface Measurement {
  /** Wall time of the measured part. */
  seconds: number;
  /** Payload bytes moved: gives MB/s, and CPU per MiB. */
  bytes?: number;
  /** Files moved: gives files/s. */
  files?: number;
  /** The main figure when the unit is neither MB/s nor files/s (e.g. MiB of RSS, p99 ms). */
  value?: number;
  /** Longest wait between two consecutive files, or the longest event-loop block. */
  maxGapMs?: number;
  /** Further figures, printed under the row and available to goals (numbers are medians over runs). */
  extra?: Record<string, number | string>;
}

/** A workload's results on one server: medians over the measured runs. */
export interface Summary {
  target: string;
  /** Median of the main figure, in the workload's unit. */
  value: number;
  cpuMsPerMiB: number | null;
  loopCpuMsPerMiB: number | null;
  /** Maximum over all runs, of the server and its children. */
  peakRssMiB: number;
  /** Maximum over all runs: one stall is a stall. */
  maxGapMs: number | null;
  extra: Record<string, number | string>;
  runs: Measurement[];
}

export interface Verdict {
  met: boolean;
  /** The figures the verdict rests on, e.g. '1.32× (412 vs 312 files/s)'. */
  figures: string;
}

/** A workload's summaries: by role, and every one by its row's name. */
export interface Roles {
  sluice?: Summary;
  auditOff?: Summary;
  peer?: Summary;
  byName: Record<string, Summary>;
}

/** A goal of #13 or #14, judged on one workload's summaries; null when it cannot be (peer skipped). */
export interface Goal {
  text: string;
  judge(r: Roles): Verdict | null;
}

export interface Workload {
  /** Unique, e.g. 'ftp-small-put'; --only takes it or its group. */
  name: string;
  /** e.g. 'ftp-small': the workloads measured together (up and down). */
  group: string;
  /** Row heading, e.g. 'FTP put 1,000 × 4 KiB, one control connection (curl glob)'. */
  title: string;
  protocol: Protocol;
  peer: PeerName | null;
  unit: Unit;
  /** Part of --quick. */
  quick: boolean;
  /** Also measured on sluice with audit off (where that is cheap). */
  auditOff: boolean;
  /**
   * The sluices this workload runs on instead of the default one (and the
   * audit-off one), each started once for the whole bench; ratios of the
   * later ones over the first are printed under the table.
   */
  sluices?: SluiceOptions[];
  /** Measured runs when not --runs (a workload of minutes says 1). */
  runs?: number;
  /** Skip the warm-up run (a workload that warms itself, or one too long to repeat). */
  noWarmUp?: boolean;
  /**
   * Its run opens several connections at once, which the workers share, so
   * one warm-up run warms them all. A run of one connection is served by one
   * worker: its warm-up repeats until every worker has served one.
   */
  concurrent?: boolean;
  goals: Goal[];
  /** Once per server before its warm-up, e.g. place the files to download. */
  prepare?(target: Target, ctx: BenchContext): Promise<void>;
  /** One run. Throws when a transfer's bytes, sizes or file count are wrong: the bench then exits non-zero. */
  run(target: Target, ctx: BenchContext): Promise<Measurement>;
  /** After the last run on a server: remove what it left there. */
  cleanup?(target: Target, ctx: BenchContext): Promise<void>;
}

/** sluice's median over the peer's, for goals such as '≥ 1.0× vsftpd'. */
export function atLeastPeer(min: number, unit: Unit, peerName: string): Goal {
  return {
    text: `≥ ${min.toFixed(2)}× ${peerName}`,
    judge({ sluice, peer }) {
      if (!sluice || !peer) return null;
      const ratio = sluice.value / peer.value;
      return { met: ratio >= min, figures: `${ratio.toFixed(2)}× (${fmt(sluice.value)} vs ${fmt(peer.value)} ${unit})` };
    },
  };
}

/** Row `of`'s median over row `over`'s (target names), judged by `met`. */
function ratioGoal(text: string, unit: Unit, of: string, over: string, met: (ratio: number) => boolean): Goal {
  return {
    text,
    judge({ byName }) {
      const a = byName[of];
      const b = byName[over];
      if (!a || !b) return null;
      const ratio = a.value / b.value;
      return { met: met(ratio), figures: `${ratio.toFixed(2)}× (${fmt(a.value)} vs ${fmt(b.value)} ${unit})` };
    },
  };
}

/** For goals such as 'sluice workers auto ≥ 1.2× sluice workers 1'. */
export function atLeast(min: number, unit: Unit, of: string, over: string): Goal {
  return ratioGoal(`${of} ≥ ${min.toFixed(2)}× ${over}`, unit, of, over, (r) => r >= min);
}

/** For figures where less is better (latency), such as 'sluice PostgreSQL ≤ 1.10× sluice SQLite'. */
export function atMost(max: number, unit: Unit, of: string, over: string): Goal {
  return ratioGoal(`${of} ≤ ${max.toFixed(2)}× ${over}`, unit, of, over, (r) => r <= max);
}

/** No wait between consecutive files (or event-loop block) over `ms` in any run. */
export function noGapOver(ms: number, what = 'between files'): Goal {
  return {
    text: `never a stall over ${ms} ms ${what}`,
    judge({ sluice }) {
      if (!sluice || sluice.maxGapMs === null) return null;
      return { met: sluice.maxGapMs <= ms, figures: `longest ${sluice.maxGapMs.toFixed(0)} ms` };
    },
  };
}

export function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** The target's endpoint for `protocol`; the runner gives a workload only targets that have one. */
export function endpointOf(target: Target, protocol: Protocol): Endpoint {
  const ep = target.endpoints[protocol];
  if (!ep) throw new Error(`${target.name} serves no ${protocol}`);
  return ep;
}
