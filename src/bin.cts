#!/usr/bin/env node
// CommonJS on purpose: it runs before the ESM loader touches libuv's thread
// pool, so the larger pool (argon2 and file I/O share it) takes effect.
process.env.UV_THREADPOOL_SIZE ??= '16';
/**
 * A worker that ends with its channel to the primary still open (it failed before serving: code that did
 * not load, a start refused) leaves now: the channel would keep it running, never ready, and the primary
 * waiting for it, a SIGTERM too (heeded once the start is done); only a SIGKILL ended such a server. Its
 * exit fails the primary's start (`worker exited before it was ready`). A worker that served has closed it.
 * node:cluster is loaded only for a process with such a channel: for a CLI command it was about 10 ms of
 * CPU (it loads child_process and net), some 3 % of `sluice user show`.
 */
function leaveIfWorker(): void {
  if (process.connected && (require('node:cluster') as typeof import('node:cluster').default).isWorker) process.exit();
}
import('./cli/main.js').then((m: { main(argv: string[]): Promise<number> }) => m.main(process.argv.slice(2))).then(
  (code) => {
    process.exitCode = code;
    leaveIfWorker();
  },
  (err: unknown) => {
    process.stderr.write(`sluice: ${String(err)}\n`);
    process.exitCode = 1;
    leaveIfWorker();
  },
);
