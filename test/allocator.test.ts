import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { selfSignedCertificate } from '../src/certs/self-signed.js';
import { allocatorEnv, workerExecArgv } from '../src/cluster/allocator.js';

const MAPPED = 'glibc.malloc.mmap_threshold=1048576';

describe("workers' malloc settings (allocatorEnv)", () => {
  const cases: [string, NodeJS.ProcessEnv, Record<string, string>][] = [
    // Not hugetlb=1 (src/cluster/allocator.ts): huge pages for the whole heap cost each TLS connection about 54 KiB.
    ['one arena, hash blocks mapped and unmapped in 4 KiB pages', {}, { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: MAPPED }],
    ["the operator's arena count wins", { MALLOC_ARENA_MAX: '4' }, { MALLOC_ARENA_MAX: '4', GLIBC_TUNABLES: MAPPED }],
    ["the operator's other tunables are kept, the threshold added", { GLIBC_TUNABLES: 'glibc.pthread.rseq=0' }, { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: `glibc.pthread.rseq=0:${MAPPED}` }],
    ["the operator's own threshold wins", { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4194304' }, { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4194304' }],
    ["the operator's empty tunables win: glibc's own threshold", { GLIBC_TUNABLES: '' }, { MALLOC_ARENA_MAX: '1', GLIBC_TUNABLES: '' }],
  ];
  for (const [name, env, expected] of cases) {
    it(name, () => assert.deepEqual(allocatorEnv(env), expected));
  }
});

describe("workers' malloc settings, measured in a process started with them", () => {
  const probe = fileURLToPath(new URL('./fixtures/malloc-probe.mjs', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'sluice-malloc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  /** In a process started with the workers' settings, or with glibc's defaults (`glibcDefaults`). */
  const measure = async (args: string[], glibcDefaults = false): Promise<Record<string, number>> => {
    const { MALLOC_ARENA_MAX: _a, GLIBC_TUNABLES: _t, ...rest } = process.env;
    const env = glibcDefaults ? rest : { ...rest, ...allocatorEnv({}) };
    const { stdout } = await promisify(execFile)(process.execPath, [probe, ...args], { env });
    return JSON.parse(stdout) as Record<string, number>;
  };

  it("idle TLS connections cost no more than in glibc's default heap (huge pages for the heap cost about 54 KiB more each)", async () => {
    const { cert, key } = await selfSignedCertificate(['localhost'], ['127.0.0.1']);
    writeFileSync(join(dir, 'cert.pem'), cert);
    writeFileSync(join(dir, 'key.pem'), key);
    // 31-39 KiB each here with these settings or glibc's defaults; 86-92 with glibc.malloc.hugetlb=1. Against
    // the defaults measured now: where the kernel backs every heap with huge pages (THP "always"), both pay.
    const args = ['tls', '1000', join(dir, 'cert.pem'), join(dir, 'key.pem')];
    const ours = (await measure(args)).kibPerConnection!;
    const defaults = (await measure(args, true)).kibPerConnection!;
    assert.ok(ours < defaults + 15, `${ours.toFixed(1)} KiB per TLS connection, ${defaults.toFixed(1)} with glibc's defaults`);
  });

  it("argon2's 19 MiB blocks are given back after each hash, not kept in the arena", async () => {
    // Under 1 MiB here; the one arena alone keeps 19-38 MiB.
    const { heldMiB } = await measure(['argon2', '8']);
    assert.ok(heldMiB! < 8, `${heldMiB!.toFixed(1)} MiB held after 8 verifications`);
  });
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
