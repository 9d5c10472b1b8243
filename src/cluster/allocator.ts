const MMAP_THRESHOLD = 'glibc.malloc.mmap_threshold=1048576';

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
 * - One arena (MALLOC_ARENA_MAX=1): otherwise each thread that allocates
 *   (every thread of the pool) gets an arena of its own, which keeps what
 *   it freed. The pool's file I/O does not allocate, so the shared arena's
 *   lock is not contended.
 * - A fixed 1 MiB mmap threshold: each block is mapped for its hash and
 *   unmapped after it. In the arena alone, the space a freed block leaves is
 *   taken by the sessions' small allocations, so the next hash extends the
 *   heap again: 5,000 FTPS logins of distinct users left 133 KiB per session
 *   there, 72 KiB with the blocks mapped. Mapping 19 MiB in 4 KiB pages costs
 *   CPU: a verification takes about 46 ms instead of 29 in the arena alone.
 *
 * Not glibc.malloc.hugetlb=1 as well, although it makes mapping a block cheap
 * (a few faults instead of about 4,900: 31 ms): it asks for huge pages for the
 * whole heap, and each TLS connection then held about 54 KiB more (10,000 idle
 * sessions: 1,058 MiB against 826). Kept passwords (auth.passwordCache) spare
 * most logins the hash.
 *
 * An operator's own MALLOC_ARENA_MAX wins; an operator's GLIBC_TUNABLES gets
 * the threshold added unless it sets one itself, or is set empty (then glibc's
 * own threshold).
 */
export function allocatorEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return { MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? '1', GLIBC_TUNABLES: withThreshold(env.GLIBC_TUNABLES) };
}

function withThreshold(own: string | undefined): string {
  if (own === undefined) return MMAP_THRESHOLD;
  if (own === '' || /(^|:)glibc\.malloc\.mmap_threshold=/.test(own)) return own;
  return `${own}:${MMAP_THRESHOLD}`;
}

/**
 * V8 flags a worker starts with, after the primary's own; an operator's own
 * setting of a flag (command line or NODE_OPTIONS) wins.
 *
 * - The young generation, 8 MiB per semi-space instead of Node 20's 16. A
 *   worker serving thousands of sessions allocates fast while they log in,
 *   and V8 grows its young generation to the largest size allowed and keeps
 *   it once the sessions sit idle: 8 MiB keeps 10,000 idle sessions on two
 *   workers about 35 MiB lower; with 2 MiB the collector ran so often that an
 *   SFTP download lost half its speed.
 * - The old generation's first limit, 64 MiB. An FTPS upload gets its bytes
 *   as a fresh 16 KiB buffer per TLS record, garbage as soon as it is
 *   written, and V8 counts that memory against the old generation's limit
 *   until a collection frees it. A small heap's limit leaves too little room
 *   for it: V8 then ran a full mark-compact for every 14-18 MiB uploaded
 *   (43-56 per 768 MiB) where a young collection frees the same buffers;
 *   in one process the upload spent twice the CPU per MiB. With 16 MiB a
 *   worker still ran 13-33 per 768 MiB, with 32 one process did in two runs
 *   of three; 64 left at most one. Only the first limit is raised: once the
 *   heap holds more (thousands of sessions), V8 sets its limits as before.
 *   It costs memory during a transfer (README, Performance).
 */
const WORKER_V8_FLAGS: readonly (readonly [flag: string, value: number])[] = [
  ['--max-semi-space-size', 8],
  ['--initial-old-space-size', 64],
];

export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  // Node takes a V8 flag after one dash or two, and V8 reads - and _ in its name alike.
  const own = (flag: string) => given.some((a) => a.split('=')[0]!.replace(/^-+/, '--').replace(/_/g, '-') === flag);
  return [...execArgv, ...WORKER_V8_FLAGS.filter(([flag]) => !own(flag)).map(([flag, value]) => `${flag}=${value}`)];
}
