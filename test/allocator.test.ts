import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocatorEnv, workerExecArgv } from '../src/cluster/allocator.js';

const MAPPED = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=1048576';

describe("workers' malloc settings (allocatorEnv)", () => {
  const cases: [string, NodeJS.ProcessEnv, string | null, Record<string, string>][] = [
    ['THP on request: one arena, blocks mapped as huge pages', {}, 'always defer [madvise] never\n', { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: MAPPED }],
    ['THP always', {}, '[always] madvise never\n', { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: MAPPED }],
    // Mapping 19 MiB in 4 KiB pages per login would cost more CPU than the hash: the arena alone then.
    ['THP off', {}, 'always madvise [never]\n', { MALLOC_ARENA_MAX: '1' }],
    ['no THP in the kernel', {}, null, { MALLOC_ARENA_MAX: '1' }],
    ["the operator's arena count wins", { MALLOC_ARENA_MAX: '4' }, null, { MALLOC_ARENA_MAX: '4' }],
    ["the operator's tunables win, even empty", { GLIBC_TUNABLES: '' }, '[madvise]', { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: '' }],
  ];
  for (const [name, env, thp, expected] of cases) {
    it(name, () => assert.deepEqual(allocatorEnv(env, thp), expected));
  }
});

describe("workers' V8 flags (workerExecArgv)", () => {
  const HEAP = ['--max-semi-space-size=8', '--initial-old-space-size=64'];
  const cases: [string, string[], string | undefined, string[]][] = [
    ["a smaller young generation and a higher first old-generation limit, after the primary's own flags", ['--enable-source-maps'], undefined, ['--enable-source-maps', ...HEAP]],
    ["the operator's flag on the command line wins", ['--max-semi-space-size=32'], undefined, ['--max-semi-space-size=32', '--initial-old-space-size=64']],
    ["the operator's flag in NODE_OPTIONS wins", [], '--trace-warnings  --max-semi-space-size=4', ['--initial-old-space-size=64']],
    ["the operator's flag wins spelt with underscores, as V8 also reads it", ['--initial_old_space_size=16'], undefined, ['--initial_old_space_size=16', '--max-semi-space-size=8']],
    ["the operator's flag wins after a single dash, as Node also takes it", ['-max-semi-space-size=16'], undefined, ['-max-semi-space-size=16', '--initial-old-space-size=64']],
    ['other NODE_OPTIONS change nothing', [], '--trace-warnings', HEAP],
  ];
  for (const [name, execArgv, nodeOptions, expected] of cases) {
    it(name, () => assert.deepEqual(workerExecArgv(execArgv, nodeOptions), expected));
  }
});
