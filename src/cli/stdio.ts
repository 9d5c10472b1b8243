/**
 * stdout and stderr are pipes in production (journald, a supervisor) and such a
 * pipe can lose its reader while the server runs. A write then fails with
 * EPIPE (EIO for a terminal that was closed), emitted as an 'error' event
 * that, unhandled, would stop the process; with nobody reading, there is
 * nobody to tell either, so further output is dropped. Any other error on
 * them is still thrown as before.
 */
export function dropOutputWhenReaderGone(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'EIO') throw err;
    });
  }
}
