import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Config } from './config/schema.js';
import { PID_FILE, readPid } from './serve-pid.js';
import { lockFile, type HeldLock } from './store/sqlite/file-lock.js';


/**
 * What one `sluice serve` must be alone on: its data directory (the start's
 * sweep of leftover uploads would take a running server's for a crash's) and
 * its audit trail (a second writer forks the hash chain: found in a new user's
 * try, a second `npm start` on a served directory wrote its audit-start with
 * the running server's next sequence number, and `audit verify` failed from
 * there). Each place's lock is taken before anything is written there and held
 * for the process's life; the kernel drops it when the process ends.
 *
 * Answers the held locks, or why serving must not start.
 */
export function holdServedPlaces(config: Config): { release(): void } | { refused: string } {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const held: HeldLock[] = [];
  const release = () => held.splice(0).forEach((lock) => lock.release());
  const data = lockFile(join(dataDir, 'serve.lock'));
  if (!data) return { refused: `${dataDir} is already served by ${holder(dataDir)}: stop that server first` };
  held.push(data);
  const trail = resolve(dataDir, config.audit.file);
  // Wherever it is: another server's config may name this trail too, from a data directory of its own, even
  // one whose trail lies in this data directory (found by a review: a trail under the data directory was left
  // to serve.lock, which a server with another data directory never takes, and the chain forked).
  if (config.audit.enabled) {
    mkdirSync(dirname(trail), { recursive: true });
    const lock = lockFile(`${trail}.lock`);
    if (!lock) {
      release();
      return { refused: `${trail} is already written by another sluice serve (its lock ${trail}.lock is held): one trail takes one writer` };
    }
    held.push(lock);
  }
  const pidFile = join(dataDir, PID_FILE);
  const pid = String(process.pid);
  writePid(pidFile, pid);
  return {
    release: () => {
      // A later server may have written its own since (this one crashed and was not the one stopping).
      if (readPid(pidFile) === pid) rmSync(pidFile, { force: true });
      release();
    },
  };
}

/** The pid only names the holder for the refusal: a disk too full to take it must not stop the server. */
function writePid(file: string, pid: string): void {
  try {
    writeFileSync(file, `${pid}\n`, { mode: 0o644 });
  } catch {
    // The lock, not this file, keeps a second server out.
  }
}

function holder(dataDir: string): string {
  const pid = readPid(join(dataDir, PID_FILE));
  return pid ? `pid ${pid}` : 'another process';
}
