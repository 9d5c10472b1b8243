/**
 * Stops this thread for `ms`, event loop and all: only where the caller is
 * synchronous already and nothing is served meanwhile (a start-up's open, a
 * dying process's last writes), between tries of something another process holds.
 */
export function blockingPause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
