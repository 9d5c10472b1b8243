import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readRegularFileSync } from './regular-file.js';

/*
 * The pid file a `sluice serve` writes beside its data directory's lock
 * (served-places.ts), apart from that lock's code so that a CLI command may
 * read it without loading the store's driver.
 */

/** Where the serving process writes its pid, beside the data directory's lock. */
export const PID_FILE = 'serve.pid';

/** Longer is no pid file of ours. */
const PID_BYTES = 32;

/**
 * The pid in `file`; null when there is none. Read as a regular file only: a
 * FIFO put there held `sluice user …` and the server's own stop for ever.
 */
export function readPid(file: string): string | null {
  try {
    return /^(\d+)\n?$/.exec(readRegularFileSync(file, PID_BYTES).toString('utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * The pid of a `sluice serve` that serves `dataDir` now, as far as its pid
 * file and the process table tell (for a note, never for a decision: the
 * data directory's lock is what keeps a second server out); null: none.
 */
export function servingPid(dataDir: string): number | null {
  const pid = Number(readPid(join(resolve(dataDir), PID_FILE)));
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, as another user (the server's own, a CLI run as root).
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return null;
  }
  try {
    // A pid left by a crash may have been given to another program since.
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('serve') ? pid : null;
  } catch {
    return pid;
  }
}
