import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { UPLOAD_TEMP_PREFIX } from '../paths.js';
import { errnoCode, fromErrno } from './errno.js';
import { DIR_FLAGS, procPath } from './local.js';

/*
 * The local side of the start-up sweep (see home-sweep.ts): finding the
 * homes on disk and walking one. Symlinks are never followed: every
 * directory is opened O_NOFOLLOW through its parent's descriptor, as the
 * local storage does.
 */

/** What one walk of a home found and took out. */
export interface HomeWalk {
  /** Upload temporaries removed. */
  temps: { count: number; bytes: number };
  /** The home's usage as the quota counts it (see QuotaLedger). */
  usage: { bytes: number; files: number };
  /** Files with several links already counted: their bytes count once. */
  linked: Set<string>;
}

/** The directories in `dir` (none when it does not exist). */
export async function subdirectories(dir: string): Promise<string[]> {
  try {
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw fromErrno(err);
  }
}

/** The real path of a home, or null when it cannot be resolved. */
export async function realHome(path: string): Promise<string | null> {
  return fsp.realpath(path).catch(() => null);
}

/**
 * Walk a home: remove the upload temporaries and count the rest. Null when
 * the home cannot be opened; `error` when the walk stopped before the end
 * (what it removed until then is in `temps`, its count is not the home's).
 */
export async function walkHome(home: string): Promise<{ walk: HomeWalk; error: unknown } | null> {
  let dir: FileHandle;
  try {
    dir = await fsp.open(home, DIR_FLAGS);
  } catch {
    return null;
  }
  const walk: HomeWalk = { temps: { count: 0, bytes: 0 }, usage: { bytes: 0, files: 0 }, linked: new Set() };
  try {
    await walkDir(dir, walk);
    return { walk, error: null };
  } catch (err) {
    return { walk, error: err };
  } finally {
    await dir.close();
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
