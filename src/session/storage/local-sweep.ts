import { promises as fsp, type Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isClientName, UPLOAD_TEMP_PREFIX } from '../paths.js';
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
  /** Names no client may give (isClientName), so not listed or served: how many, and the first met. */
  unreachable: { count: number; example: string | null };
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
  const walk: HomeWalk = { temps: { count: 0, bytes: 0 }, usage: { bytes: 0, files: 0 }, linked: new Set(), unreachable: { count: 0, example: null } };
  try {
    await walkTree(dir, walk);
    return { walk, error: null };
  } catch (err) {
    return { walk, error: err };
  } finally {
    await dir.close();
  }
}

/** Errors that mean a name went away or is not a directory any more: nothing to count under it. */
const VANISHED = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

/**
 * Directories held open above the one being walked (the home as well, and
 * the listing of one: 35 descriptors at most). A tree may be deeper
 * than any path a client can give (MKD one level at a time to the path
 * limit, then the tree moved down into another one, as often as wanted; or
 * made on the host): held one per level, the start's sweep ran out of
 * descriptors in it (found by the paths review), and with it whatever else
 * the process opened meanwhile. Deeper ones are let go on the way down and
 * opened again on the way back up through `..`, known again by device and
 * inode: each directory is opened at most twice.
 */
const HELD_LEVELS = 32;

/** One directory of the path being walked. */
interface Level {
  /** Open, or null once let go (see HELD_LEVELS). */
  fh: FileHandle | null;
  /** What it was when let go, `dev:ino`, to know it again when climbed back to. */
  id: string | null;
  /** Its subdirectories not walked yet. */
  subdirs: Buffer[];
}

async function walkTree(home: FileHandle, walk: HomeWalk): Promise<void> {
  const levels: Level[] = [{ fh: home, id: null, subdirs: await listDir(home, walk) }];
  try {
    for (let level = levels[0]; level !== undefined; level = levels[levels.length - 1]) {
      const dir = level.fh as FileHandle;
      const name = level.subdirs.pop();
      if (name === undefined) {
        levels.pop();
        await climb(dir, levels[levels.length - 1]);
        continue;
      }
      const child = await openChild(dir, name);
      if (child === null) continue;
      const entered: Level = { fh: child, id: null, subdirs: [] };
      levels.push(entered);
      const far = levels.length - 1 - HELD_LEVELS;
      if (far > 0) await letGo(levels[far] as Level);
      entered.subdirs = await listDir(child, walk);
    }
  } finally {
    // The home (levels[0]) is its caller's to close.
    await Promise.all(levels.slice(1).map((l) => l.fh?.close()));
  }
}

/** Leave the walked directory `dir` for `parent` (none: `dir` is the home), which is opened again if it was let go. */
async function climb(dir: FileHandle, parent: Level | undefined): Promise<void> {
  if (parent === undefined) return;
  try {
    if (parent.fh === null) {
      const up = await fsp.open(procPath(dir.fd, '..'), DIR_FLAGS);
      parent.fh = up;
      // Moved meanwhile (on the host: clients are not served yet), `..` is another directory: nothing to walk on from.
      if (identity(await up.stat()) !== parent.id) throw new Error('a directory was moved while the sweep walked it');
    }
  } finally {
    await dir.close();
  }
}

async function letGo(level: Level): Promise<void> {
  const { fh } = level;
  if (fh === null) return;
  level.fh = null;
  try {
    level.id = identity(await fh.stat());
  } finally {
    await fh.close();
  }
}

function identity(st: { dev: number; ino: number }): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * The entry `name` of `dir`, by the bytes the directory holds. Names are read
 * as bytes (listDir): decoded, each byte that is no UTF-8 became U+FFFD, and
 * the walk opened another name or none (found by a review: `caf\xe9` and
 * `caf\xe8` each counted as a `caf\uFFFD` beside them, a directory so named
 * was not walked, nor its files counted nor its temporaries removed).
 */
function entryPath(dir: FileHandle, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${procPath(dir.fd)}/`), name]);
}

/** The subdirectory `name` of `dir` opened, or null when it went away or is no directory now. */
async function openChild(dir: FileHandle, name: Buffer): Promise<FileHandle | null> {
  try {
    return await fsp.open(entryPath(dir, name), DIR_FLAGS);
  } catch (err) {
    if (VANISHED.has(errnoCode(err) ?? '')) return null; // swapped for a symlink since it was listed: not ours to follow
    throw err;
  }
}

/** Count `dir`'s entries and remove its upload temporaries; its subdirectories, to walk once this listing is closed. */
async function listDir(dir: FileHandle, walk: HomeWalk): Promise<Buffer[]> {
  const subdirs: Buffer[] = [];
  // Node gives names as bytes with encoding 'buffer', as readdir does; its types for opendir leave that out.
  const listing = await fsp.opendir(procPath(dir.fd), { bufferSize: 128, encoding: 'buffer' as BufferEncoding });
  for await (const entry of listing as AsyncIterable<Dirent> as AsyncIterable<Dirent<Buffer>>) {
    // As clients and listings read it (see entryPath): any byte that is no UTF-8 makes it no client's name.
    const text = entry.name.toString('utf8');
    if (text.startsWith(UPLOAD_TEMP_PREFIX)) {
      // Hidden from clients, so not theirs to count; a file of that name is a crash's leftover.
      if (entry.isFile()) await removeTemp(dir, entry.name, walk);
      continue;
    }
    if (!isClientName(text)) {
      walk.unreachable.count++;
      walk.unreachable.example ??= text;
    }
    walk.usage.files++;
    if (entry.isDirectory()) subdirs.push(entry.name);
    else if (!entry.isSymbolicLink() && (await countBytes(dir, entry.name, walk)) === 'directory') subdirs.push(entry.name);
  }
  return subdirs;
}

/** Count a regular file's bytes; says 'directory' for one the listing could not type (DT_UNKNOWN). */
async function countBytes(dir: FileHandle, name: Buffer, walk: HomeWalk): Promise<'directory' | null> {
  let st;
  try {
    st = await fsp.lstat(entryPath(dir, name));
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

async function removeTemp(dir: FileHandle, name: Buffer, walk: HomeWalk): Promise<void> {
  const path = entryPath(dir, name);
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
