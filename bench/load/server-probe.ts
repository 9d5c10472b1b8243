/**
 * The bench's window into sluice's processes: bench/probe/loop-delay.mjs,
 * preloaded into each of them (the primary and its workers), reports the event
 * loop's delay and the memory split (heap, external, buffers) on SIGUSR2.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { catchesSignal, descendants } from '../procfs.js';

const PRELOAD = fileURLToPath(new URL('../probe/loop-delay.mjs', import.meta.url));

export interface ProbeReport {
  seconds: number;
  /**
   * Milliseconds an event loop was late, since the previous report: the
   * largest max and p99 of the processes (so p99 is an upper bound of the
   * pooled one), the mean over all their samples.
   */
  delay: { max: number; p99: number; mean: number; count: number };
  /** What the loops did while late (see onCpuStretches in the probe): the largest of the processes; null without schedstat. */
  stretches: Stretches | null;
  /** Summed over the processes. */
  memory: NodeJS.MemoryUsage;
  /** Processes that answered. */
  processes: number;
}

export interface Stretches {
  /** The longest time a loop thread ran between two ticks of a 1 ms timer: its longest block. */
  maxOnCpuMs: number;
  /** The longest gap between two ticks, split into the loop thread's time on a CPU and in the run queue. */
  longest: { ms: number; onCpuMs: number; waitingMs: number };
}

type OneReport = Omit<ProbeReport, 'processes'>;

function combineStretches(all: (Stretches | null)[]): Stretches | null {
  const known = all.filter((s): s is Stretches => s !== null);
  if (known.length === 0) return null;
  return {
    maxOnCpuMs: Math.max(...known.map((s) => s.maxOnCpuMs)),
    longest: known.map((s) => s.longest).reduce((a, b) => (b.ms > a.ms ? b : a)),
  };
}

function combine(reports: OneReport[]): ProbeReport {
  const count = reports.reduce((s, r) => s + r.delay.count, 0);
  const sum = (pick: (m: NodeJS.MemoryUsage) => number) => reports.reduce((s, r) => s + pick(r.memory), 0);
  return {
    seconds: Math.max(...reports.map((r) => r.seconds)),
    delay: {
      max: Math.max(...reports.map((r) => r.delay.max)),
      p99: Math.max(...reports.map((r) => r.delay.p99)),
      mean: count === 0 ? 0 : reports.reduce((s, r) => s + r.delay.mean * r.delay.count, 0) / count,
      count,
    },
    stretches: combineStretches(reports.map((r) => r.stretches ?? null)),
    memory: {
      rss: sum((m) => m.rss),
      heapTotal: sum((m) => m.heapTotal),
      heapUsed: sum((m) => m.heapUsed),
      external: sum((m) => m.external),
      arrayBuffers: sum((m) => m.arrayBuffers),
    },
    processes: reports.length,
  };
}

/** Runs `start` with `vars` in the environment a sluice process inherits (TestServer passes ours on). */
export async function withEnv<T>(vars: Record<string, string>, start: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await start();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/**
 * Runs `start` with the probe preloaded (NODE_OPTIONS, not product code: the
 * server under test is the one users run).
 */
export async function withProbe<T>(work: string, start: () => Promise<T>): Promise<{ started: T; probe: Probe }> {
  const dir = mkdtempSync(join(work, 'probe-'));
  const file = join(dir, 'report.json');
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`.trim();
  const started = await withEnv({ NODE_OPTIONS: nodeOptions, SLUICE_BENCH_PROBE: file }, start);
  return { started, probe: new Probe(file, dir) };
}

export class Probe {
  constructor(
    private readonly file: string,
    private readonly dir: string,
  ) {}

  /**
   * The report of `pid` and of its descendants (sluice's workers) since the
   * previous call, from those that answer within `waitMs` (null: the probe is
   * not loaded in `pid`).
   */
  async read(pid: number, waitMs = 5000): Promise<ProbeReport | null> {
    // Only processes with a handler: SIGUSR2 ends any other.
    const probed = [pid, ...descendants(pid)].filter((p) => catchesSignal(p, constants.signals.SIGUSR2));
    const files = new Map(probed.map((p) => [p, `${this.file}.${p}`]));
    if (!files.has(pid)) return null;
    for (const [p, file] of files) {
      rmSync(file, { force: true });
      try {
        process.kill(p, 'SIGUSR2');
      } catch {
        files.delete(p); // exited since the listing
      }
    }
    const all = () => [...files.values()].every((f) => existsSync(f));
    for (const end = Date.now() + waitMs; Date.now() < end && !all(); ) await new Promise((r) => setTimeout(r, 25));
    if (!existsSync(files.get(pid) as string)) return null;
    const reports = [...files.values()].filter((f) => existsSync(f)).map((f) => JSON.parse(readFileSync(f, 'utf8')) as OneReport);
    return combine(reports);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
