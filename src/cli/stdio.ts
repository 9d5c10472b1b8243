import { shown } from '../session/unsafe-chars.js';

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

/**
 * One line to stderr, `sluice: ` first, its text escaped as the CLI's tables
 * escape client text (shown): a message echoes the operator's arguments, file
 * names and a server's replies, and a control character in one drove the
 * terminal (found by an operator's review: `sluice session kill $'\x1b[2J'`
 * cleared the screen, through the API's "no live session" echoing the id).
 */
export function complain(message: string): void {
  process.stderr.write(`sluice: ${shown(message)}\n`);
}
