import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * Property runs per fuzz test: a few dozen in `npm test`, as many as asked
 * by `npm run fuzz` (FUZZ_RUNS). FUZZ_SEED replays a failure fast-check
 * reported.
 */
export function fuzzRuns(inSuite: number): number {
  const asked = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(asked) && asked > 0 ? asked : inSuite;
}

export function fuzzSeed(): number | undefined {
  const seed = Number(process.env.FUZZ_SEED);
  return Number.isInteger(seed) ? seed : undefined;
}

/**
 * Server configuration for a fuzz run. Hostile input from one address is
 * exactly what the defender bans: loopback is on its allow-list, or the
 * fuzzer would test the ban instead of the parsers.
 */
export function fuzzYaml(extra: string): string {
  return extra + 'defender:\n  allowList: ["127.0.0.1/32"]\n';
}

/**
 * So that RSS says whether the server leaks: its V8 heap is capped
 * (unbounded, V8 would rather grow than collect; capped, a leak ends in a
 * crash or shows in RSS within the run), and glibc's mmap threshold is fixed
 * (by default it rises to the 19 MiB of an argon2 hash once one is freed,
 * after which those blocks are kept: some 200 MiB after a few dozen logins,
 * flat from then on; measured, not a leak).
 */
export const FUZZ_SERVER_ENV = { NODE_OPTIONS: '--max-old-space-size=64', MALLOC_MMAP_THRESHOLD_: String(1024 * 1024) };

export interface Usage {
  rssBytes: number;
  fds: number;
}

export function usageOf(pid: number): Usage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return { rssBytes: kib * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** RSS may grow this much over the baseline: the heap filling up to its cap, buffers pooled. */
export const RSS_SLACK = 80 * 1024 * 1024;
/** Descriptors once every fuzz client is gone: the baseline, give or take a log file switching. */
export const FD_SLACK = 8;

/** What the descriptors lead to (sockets, files), to tell a leak's kind from the failure alone. */
function fdTargets(pid: number): string {
  const counts = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, '');
    } catch {
      continue;
    }
    counts.set(target, (counts.get(target) ?? 0) + 1);
  }
  return [...counts].map(([t, n]) => `${n} x ${t}`).join(', ');
}

/**
 * After the fuzz clients closed: descriptors back to the baseline (the server
 * may take a moment to see the closes) and memory within its bound.
 */
export async function assertBounded(pid: number, baseline: Usage): Promise<Usage> {
  let now = usageOf(pid);
  for (let i = 0; i < 100 && now.fds > baseline.fds + FD_SLACK; i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = usageOf(pid);
  }
  assert.ok(now.fds <= baseline.fds + FD_SLACK, `descriptors: ${now.fds} after fuzzing, ${baseline.fds} before: ${fdTargets(pid)}`);
  assert.ok(
    now.rssBytes <= baseline.rssBytes + RSS_SLACK,
    `RSS: ${(now.rssBytes / 2 ** 20).toFixed(0)} MiB after fuzzing, ${(baseline.rssBytes / 2 ** 20).toFixed(0)} MiB before`,
  );
  return now;
}
