import { closeSync, openSync, write, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { blockingPause } from '../blocking-pause.js';

/** Bytes (about) queued for stdout beyond which new lines are dropped: a terminal paused (Ctrl-S), a reader that stopped reading. */
const MAX_QUEUED = 4 * 1024 * 1024;
/** A non-blocking stdout that is full (EAGAIN) is tried again after this long, as sonic-boom does. */
const FULL_RETRY_MS = 100;
/** How long the exit waits, at most, for a full non-blocking stdout to take what is left. */
const EXIT_PATIENCE_MS = 1000;

/**
 * The console lines (stdout), written by libuv's thread pool so a slow
 * terminal or pipe never holds the event loop. Once a write fails (EPIPE: the
 * pipe's reader is gone; EIO: the terminal was closed; ENOSPC: a redirect to a
 * full disk) nobody reads what follows: the lines queued and all later ones
 * are dropped, and the server serves on. At exit, what is still queued (a fatal
 * line) is written synchronously; a failure ends that too.
 *
 * In place of pino.destination(): its stream turns every write error but
 * EPIPE into an uncaught exception, and at the exit that follows flushes
 * synchronously, trying the failed write again every 100 ms for ever in
 * Atomics.wait. A closed terminal's EIO thus left `sluice serve` listening,
 * greeting nobody, and deaf to SIGTERM (its handler waits for the event loop).
 */
class StdoutLines {
  private queue: string[] = [];
  private queued = 0;
  /** The chunk being written; `inPool`: a thread has it (else it waits to be tried again). */
  private chunk: Buffer | null = null;
  private inPool = false;
  private gone = false;

  constructor(private readonly fd: number) {
    process.on('exit', () => {
      this.writeRestNow();
      releaseClosedTerminal();
    });
  }

  write(line: string): void {
    if (this.gone || this.queued + line.length > MAX_QUEUED) return;
    this.queue.push(line);
    this.queued += line.length;
    if (this.chunk === null) this.send(this.take());
  }

  private take(): Buffer {
    const chunk = Buffer.from(this.queue.join(''));
    this.queue = [];
    this.queued = 0;
    return chunk;
  }

  private send(chunk: Buffer): void {
    this.chunk = chunk;
    this.inPool = true;
    write(this.fd, chunk, 0, chunk.length, null, (err, n) => {
      this.inPool = false;
      if (this.gone) return;
      if (err?.code === 'EAGAIN') {
        setTimeout(() => this.gone || this.send(chunk), FULL_RETRY_MS).unref();
      } else if (err) {
        this.stop(err);
      } else if (n < chunk.length) {
        this.send(chunk.subarray(n));
      } else {
        this.chunk = null;
        if (this.queue.length > 0) this.send(this.take());
      }
    });
  }

  private stop(err: Error): void {
    this.gone = true;
    this.queue = [];
    this.queued = 0;
    this.chunk = null;
    // Said once on stderr, for when only stdout is gone (`sluice serve | head`); on a closed terminal it is lost as well.
    write(2, `sluice: log lines to stdout are dropped from now on: ${err.message}\n`, () => undefined);
  }

  /**
   * On 'exit': no event loop any more, so synchronously. A full non-blocking
   * stdout gets EXIT_PATIENCE_MS; a blocking one (Node makes a terminal so)
   * holds the exit while it is paused (Ctrl-S), as any program's last write would.
   */
  private writeRestNow(): void {
    if (this.gone) return;
    // A chunk a thread is writing is left to it: written twice it would show twice. The lines after it
    // (the fatal one) are written now all the same, so they may show before it (a review saw 4 in 200
    // crashes): out of order rather than lost with the process.
    const rest = Buffer.concat([this.chunk !== null && !this.inPool ? this.chunk : Buffer.alloc(0), this.take()]);
    const giveUpAt = Date.now() + EXIT_PATIENCE_MS;
    for (let at = 0; at < rest.length; ) {
      try {
        at += writeSync(this.fd, rest, at);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > giveUpAt) return;
        blockingPause(10);
      }
    }
  }
}

/** Which of stdin, stdout and stderr were terminals as the process started (Node records the same, see below). */
const wasTerminal = [0, 1, 2].map((fd) => isatty(fd));

/**
 * At exit Node 20 gives stdio that was a terminal at its start the terminal's
 * settings back, and aborts (SIGABRT, and a core dump where they are kept)
 * when that fails, as it does on a terminal that was closed: EIO, no longer a
 * terminal to isatty (nodejs/node#51519, fixed after Node 20 by #58200). Such
 * a descriptor is pointed at /dev/null first, and Node leaves alone one it
 * finds reopened. Not before the exit: a new file could take its number.
 */
function releaseClosedTerminal(): void {
  for (const fd of [0, 1, 2]) {
    if (!wasTerminal[fd] || isatty(fd)) continue;
    try {
      closeSync(fd);
      // The lowest free number: `fd`, unless a thread of the pool opened a file meanwhile; either way no terminal is there.
      openSync('/dev/null', fd === 0 ? 'r' : 'w');
    } catch {
      // Closed already: Node skips it as well.
    }
  }
}

let stdout: StdoutLines | undefined;

/** The one writer of this process's console lines (every logger's). */
export function stdoutLines(): { write(line: string): void } {
  return (stdout ??= new StdoutLines(1));
}
