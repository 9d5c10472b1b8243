#!/usr/bin/env node
// CommonJS on purpose: it runs before the ESM loader touches libuv's thread
// pool, so the larger pool (argon2 and file I/O share it) takes effect.
process.env.UV_THREADPOOL_SIZE ??= '16';
import('./cli/main.js').then((m: { main(argv: string[]): Promise<number> }) => m.main(process.argv.slice(2))).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sluice: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
