import { constants as C, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { SystemAuditSink } from '../audit/events.js';
import { errnoCode } from './errors.js';
import { procPath } from './jail.js';
import { UPLOAD_TEMP_PREFIX } from './paths.js';

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/** What the sweep took out of one home. */
interface TempSweep {
  home: string;
  count: number;
  bytes: number;
}

/** The slice of a pino logger the sweep writes to. */
interface SweepLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Start-up, before any session: remove the atomic-upload temporaries a crash
 * left behind. Clients can neither see nor name them and no ledger counts
 * them, so nothing else ever would. Walks every home under `homesDir` and
 * each configured home, once each, without following symlinks (every
 * directory is opened O_NOFOLLOW through its parent's descriptor, as the jail
 * does). Each home where something was removed gets one audit line with
 * the count and bytes; a home that cannot be swept is logged, not fatal.
 */
export async function sweepUploadTemps(
  homesDir: string,
  homes: readonly string[],
  audit: SystemAuditSink | null,
  log: SweepLog,
): Promise<void> {
  const roots = new Set<string>();
  for (const home of [...(await subdirectories(homesDir, log)), ...homes]) {
    const real = await fsp.realpath(home).catch(() => null);
    if (real !== null) roots.add(real);
  }
  for (const home of roots) {
    let dir: FileHandle;
    try {
      dir = await fsp.open(home, DIR_FLAGS);
    } catch {
      continue;
    }
    const sweep: TempSweep = { home, count: 0, bytes: 0 };
    try {
      await sweepDir(dir, sweep);
    } catch (err) {
      log.error({ err, home }, 'sweeping upload temporaries');
    } finally {
      await dir.close();
    }
    if (sweep.count === 0) continue;
    audit?.system({ event: 'upload-temps-removed', ...sweep });
    log.info(sweep, 'removed upload temporaries left by an earlier run');
  }
}

async function subdirectories(dir: string, log: SweepLog): Promise<string[]> {
  try {
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') log.error({ err, dir }, 'sweeping upload temporaries');
    return [];
  }
}

async function sweepDir(dir: FileHandle, sweep: TempSweep): Promise<void> {
  const subdirs: string[] = [];
  for await (const entry of await fsp.opendir(procPath(dir.fd), { bufferSize: 128 })) {
    if (entry.isDirectory()) subdirs.push(entry.name);
    else if (entry.isFile() && entry.name.startsWith(UPLOAD_TEMP_PREFIX)) await removeTemp(dir, entry.name, sweep);
  }
  for (const name of subdirs) {
    let child: FileHandle;
    try {
      child = await fsp.open(procPath(dir.fd, name), DIR_FLAGS);
    } catch {
      continue; // gone, or swapped for a symlink since it was listed: not ours to follow
    }
    try {
      await sweepDir(child, sweep);
    } finally {
      await child.close();
    }
  }
}

async function removeTemp(dir: FileHandle, name: string, sweep: TempSweep): Promise<void> {
  const path = procPath(dir.fd, name);
  try {
    const st = await fsp.lstat(path);
    if (!st.isFile()) return;
    await fsp.unlink(path);
    sweep.count++;
    sweep.bytes += st.size;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
