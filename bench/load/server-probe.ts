/**
 * The bench's window into a sluice process: bench/probe/loop-delay.mjs,
 * preloaded into it, reports the event loop's delay and the memory split
 * (heap, external, buffers) on SIGUSR2.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PRELOAD = fileURLToPath(new URL('../probe/loop-delay.mjs', import.meta.url));

export interface ProbeReport {
  seconds: number;
  /** Milliseconds the event loop was late, since the previous report. */
  delay: { max: number; p99: number; mean: number; count: number };
  memory: NodeJS.MemoryUsage;
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

  /** The report of `pid` since the previous call (null: the probe is not loaded there). */
  async read(pid: number, waitMs = 5000): Promise<ProbeReport | null> {
    rmSync(this.file, { force: true });
    process.kill(pid, 'SIGUSR2');
    for (const end = Date.now() + waitMs; Date.now() < end && !existsSync(this.file); ) await new Promise((r) => setTimeout(r, 25));
    return existsSync(this.file) ? (JSON.parse(readFileSync(this.file, 'utf8')) as ProbeReport) : null;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
