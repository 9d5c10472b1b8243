import { constants as C, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { SystemAuditSink } from '../audit/events.js';
import type { UsageStore } from './account.js';
import { errnoCode } from './errors.js';
import { procPath } from './jail.js';
import { UPLOAD_TEMP_PREFIX } from './paths.js';

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/** A user whose home the sweep recounts. */
export interface SweptUser {
  readonly id: number;
  readonly name: string;
  readonly home: string;
}

/** What one walk of a home found and took out. */
interface HomeWalk {
  /** Upload temporaries removed. */
  temps: { count: number; bytes: number };
  /** The home's usage as the quota counts it (see QuotaLedger). */
  usage: { bytes: number; files: number };
  /** Files with several links already counted: their bytes count once. */
  linked: Set<string>;
}

/** The slice of a pino logger the sweep writes to. */
interface SweepLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Start-up, before any session, for every home under `homesDir` and each
 * user's home:
 *
 * - remove the atomic-upload temporaries a crash left behind: clients can
 *   neither see nor name them and no ledger counts them, so nothing else ever
 *   would; one audit line per home with the count and bytes;
 * - recount the home as the quota counts it and, where a user's stored usage
 *   differs, store the disk's. A crash during an in-place upload leaves growth
 *   that was only to be recorded when the upload settled, and older versions
 *   counted neither directories nor symlinks; one audit line per corrected user.
 *
 * Each home is walked once however many users share it, and each of them gets
 * its count: every one of them sees, and is charged for, all of it. A home
 * nested in another is walked on its own and also counted in the outer one,
 * whose user sees it too. Symlinks are never followed: every directory is
 * opened O_NOFOLLOW through its parent's descriptor, as the jail does. A home
 * that cannot be walked whole is logged, not fatal, and its usage left as it is.
 */
export async function sweepHomes(
  homesDir: string,
  users: readonly SweptUser[],
  store: UsageStore,
  audit: SystemAuditSink | null,
  log: SweepLog,
): Promise<void> {
  const usersByHome = new Map<string, SweptUser[]>();
  for (const home of await subdirectories(homesDir, log)) {
    const real = await fsp.realpath(home).catch(() => null);
    if (real !== null && !usersByHome.has(real)) usersByHome.set(real, []);
  }
  for (const user of users) {
    const real = await fsp.realpath(user.home).catch(() => null);
    if (real === null) continue;
    const sharing = usersByHome.get(real);
    if (sharing) sharing.push(user);
    else usersByHome.set(real, [user]);
  }
  for (const [home, owners] of usersByHome) {
    let dir: FileHandle;
    try {
      dir = await fsp.open(home, DIR_FLAGS);
    } catch {
      continue;
    }
    const walk: HomeWalk = { temps: { count: 0, bytes: 0 }, usage: { bytes: 0, files: 0 }, linked: new Set() };
    let whole = true;
    try {
      await walkDir(dir, walk);
    } catch (err) {
      whole = false;
      log.error({ err, home }, 'sweeping a home');
    } finally {
      await dir.close();
    }
    if (walk.temps.count > 0) {
      const removed = { home, ...walk.temps };
      audit?.system({ event: 'upload-temps-removed', ...removed });
      log.info(removed, 'removed upload temporaries left by an earlier run');
    }
    if (whole) for (const user of owners) recordUsage(user, home, walk.usage, store, audit, log);
  }
}

function recordUsage(
  user: SweptUser,
  home: string,
  real: { bytes: number; files: number },
  store: UsageStore,
  audit: SystemAuditSink | null,
  log: SweepLog,
): void {
  const stored = store.usage(user.id);
  if (stored.bytes === real.bytes && stored.files === real.files) return;
  store.setUsage(user.id, real.bytes, real.files);
  const event = { user: user.name, home, oldBytes: stored.bytes, oldFiles: stored.files, ...real };
  audit?.system({ event: 'usage-recounted', ...event });
  log.info(event, 'stored usage differed from the disk: recounted');
}

async function subdirectories(dir: string, log: SweepLog): Promise<string[]> {
  try {
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') log.error({ err, dir }, 'sweeping homes');
    return [];
  }
}

/** Errors that mean a name went away or is not a directory any more: nothing to count under it. */
const VANISHED = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

async function walkDir(dir: FileHandle, walk: HomeWalk): Promise<void> {
  // Subdirectories are walked once this listing is closed: one open listing at a time.
  const subdirs: string[] = [];
  for await (const entry of await fsp.opendir(procPath(dir.fd), { bufferSize: 128 })) {
    if (entry.name.startsWith(UPLOAD_TEMP_PREFIX)) {
      // Hidden from clients, so not theirs to count; a file of that name is a crash's leftover.
      if (entry.isFile()) await removeTemp(dir, entry.name, walk);
      continue;
    }
    walk.usage.files++;
    if (entry.isDirectory()) subdirs.push(entry.name);
    else if (!entry.isSymbolicLink() && (await countBytes(dir, entry.name, walk)) === 'directory') subdirs.push(entry.name);
  }
  for (const name of subdirs) {
    let child: FileHandle;
    try {
      child = await fsp.open(procPath(dir.fd, name), DIR_FLAGS);
    } catch (err) {
      if (VANISHED.has(errnoCode(err) ?? '')) continue; // swapped for a symlink since it was listed: not ours to follow
      throw err;
    }
    try {
      await walkDir(child, walk);
    } finally {
      await child.close();
    }
  }
}

/** Count a regular file's bytes; says 'directory' for one the listing could not type (DT_UNKNOWN). */
async function countBytes(dir: FileHandle, name: string, walk: HomeWalk): Promise<'directory' | null> {
  let st;
  try {
    st = await fsp.lstat(procPath(dir.fd, name));
  } catch (err) {
    if (VANISHED.has(errnoCode(err) ?? '')) return null;
    throw err;
  }
  if (st.isDirectory()) return 'directory';
  if (!st.isFile()) return null;
  if (st.nlink > 1) {
    // Only files with other links can be met again; remembering just those keeps the set small.
    const key = `${st.dev}:${st.ino}`;
    if (walk.linked.has(key)) return null;
    walk.linked.add(key);
  }
  walk.usage.bytes += st.size;
  return null;
}

async function removeTemp(dir: FileHandle, name: string, walk: HomeWalk): Promise<void> {
  const path = procPath(dir.fd, name);
  try {
    const st = await fsp.lstat(path);
    if (!st.isFile()) return;
    await fsp.unlink(path);
    walk.temps.count++;
    walk.temps.bytes += st.size;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
