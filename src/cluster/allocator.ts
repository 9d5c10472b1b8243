import { readFileSync } from 'node:fs';

/** Where Linux says whether a process may ask for transparent huge pages. */
const THP_SETTING = '/sys/kernel/mm/transparent_hugepage/enabled';

/**
 * glibc's malloc settings for a worker, through its environment (glibc reads
 * them once, at the process's start, so the primary sets them when it forks).
 *
 * Each argon2 hash takes a 19 MiB block from malloc on a thread-pool thread.
 * By default glibc raises its mmap threshold above that size after the first
 * free, so later blocks come from the arena of the thread that ran the hash
 * and stay there: with a pool of threads taking turns, a worker kept about
 * 150 MiB after a few hundred password logins, however idle afterwards.
 *
 * - One arena (MALLOC_ARENA_MAX=1): blocks are held only for the hashes that
 *   run at once (auth.maxConcurrentHashes). The pool's file I/O does not
 *   allocate, so the shared arena's lock is not contended.
 * - Where the kernel lets a process ask for transparent huge pages, a fixed
 *   1 MiB mmap threshold as well: each block is mapped for its hash and
 *   unmapped after it, and hugetlb=1 maps it as huge pages, so mapping it
 *   costs a few faults instead of about 4,900 (with 4 KiB pages a login cost
 *   3-4 times the CPU). The arena no longer holds blocks between small
 *   allocations either: an idle FTPS session measured 114 KiB instead of 133.
 *
 * An operator's own setting of either variable wins.
 */
export function allocatorEnv(env: NodeJS.ProcessEnv, thpSetting: string | null): Record<string, string> {
  const out: Record<string, string> = { MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? '1' };
  const hugePages = thpSetting !== null && /\[(always|madvise)\]/.test(thpSetting);
  if (env.GLIBC_TUNABLES !== undefined) out.GLIBC_TUNABLES = env.GLIBC_TUNABLES;
  else if (hugePages) out.GLIBC_TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=1048576';
  return out;
}

/** V8's flag for the young generation's size; an operator's own setting (command line or NODE_OPTIONS) wins. */
const SEMI_SPACE_FLAG = '--max-semi-space-size';

/**
 * V8 flags a worker starts with, after the primary's own. A worker serving
 * thousands of sessions allocates fast while they log in, and V8 grows its
 * young generation to the largest size allowed (16 MiB per semi-space on
 * Node 20) and keeps it once the sessions sit idle. 8 MiB per semi-space
 * keeps 10,000 idle sessions on two workers about 35 MiB lower; with 2 MiB
 * the collector ran so often that an SFTP download lost half its speed.
 */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const own = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((a) => a.startsWith(SEMI_SPACE_FLAG));
  return own ? [...execArgv] : [...execArgv, `${SEMI_SPACE_FLAG}=8`];
}

/** The kernel's transparent-huge-page setting, or null where there is none (not Linux, or a kernel without THP). */
export function thpSetting(): string | null {
  try {
    return readFileSync(THP_SETTING, 'utf8');
  } catch {
    return null;
  }
}
