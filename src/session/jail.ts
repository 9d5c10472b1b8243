import { constants as C, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { SluiceError, Unseen, errnoCode, fromErrno } from './errors.js';
import { splitVirtual } from './paths.js';

/*
 * The only proof that a path stays inside a home. Node has no openat(2), so we
 * get its guarantee through /proc/self/fd: every directory on the way is opened
 * with O_NOFOLLOW relative to the fd of its parent, and the final operation
 * names `/proc/self/fd/<parent fd>/<name>`. The parent is pinned by inode, so a
 * directory renamed or swapped for a symlink after we looked cannot redirect
 * the operation (no check-then-use race). Symlinks are followed here, by us,
 * one component at a time; one that leads above the home is refused.
 */

const PROC_FD = '/proc/self/fd/';
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** Open any node without following it and without blocking on a FIFO. */
const NODE_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
const MAX_SYMLINKS = 40;

const outside = () => new SluiceError('permission-denied', 'Permission denied', 'path leads outside the home');

export function procPath(fd: number, name = ''): string {
  return name === '' ? PROC_FD + fd : `${PROC_FD}${fd}/${name}`;
}

/** A resolved location: the pinned parent directory and the final name in it. */
export class Location {
  constructor(
    private readonly dir: FileHandle,
    /** Final component; '' when the location is the home itself. */
    readonly name: string,
    /** Canonical virtual path, symlinks resolved. */
    readonly virtualPath: string,
    /**
     * A name on the way (this one included) was looked up where the caller
     * may not learn which names exist: whatever happens next must not tell.
     */
    readonly blind = false,
  ) {}

  get isRoot(): boolean {
    return this.name === '';
  }

  /** Path for a syscall on the final component (it does not follow a final symlink unless the call does). */
  get path(): string {
    return procPath(this.dir.fd, this.name);
  }

  /** Path of another name in the same pinned directory. */
  sibling(name: string): string {
    return procPath(this.dir.fd, name);
  }

  /** lstat of the final component, or null when it does not exist. */
  async lstat(): Promise<Stats | null> {
    try {
      // The home's own path is the magic link itself: describe the directory it pins.
      return this.isRoot ? await this.dir.stat() : await fsp.lstat(this.path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw fromErrno(err);
    }
  }

  /** Open the final component itself (never what it links to). */
  async open(flags: number, mode = 0o644): Promise<FileHandle> {
    try {
      // Re-opening the pinned home through its magic link is the one open that must follow.
      return await fsp.open(this.path, this.isRoot ? flags & ~C.O_NOFOLLOW : flags | C.O_NOFOLLOW, mode);
    } catch (err) {
      throw fromErrno(err);
    }
  }

  /** An fd on the final node for fchmod/futimes/fstat, whatever its type. */
  async openNode(): Promise<FileHandle> {
    return this.open(NODE_FLAGS);
  }

  async close(): Promise<void> {
    await this.dir.close().catch(() => undefined);
  }
}

export class Jail {
  /** @param root real path of the home (already resolved with realpath). */
  constructor(readonly root: string) {}

  /**
   * Resolve a clean virtual path. `followFinal` decides whether a symlink as
   * the last component is followed (stat, open) or acted on (lstat, remove).
   * `unseen(dir, name)` says whether looking `name` up in `dir` is something
   * the caller may not learn the outcome of: once one such lookup is made,
   * every failure is the same Unseen refusal, and the Location is `blind`.
   * The caller must close() the returned Location.
   */
  async resolve(virtualPath: string, followFinal: boolean, unseen?: (dir: string, name: string) => boolean): Promise<Location> {
    const pending = splitVirtual(virtualPath);
    const stack: FileHandle[] = [];
    const names: string[] = [];
    let links = 0;
    let blind = false;
    const closeAll = async (keep?: FileHandle) => {
      await Promise.all(stack.filter((h) => h !== keep).map((h) => h.close().catch(() => undefined)));
    };
    try {
      stack.push(await openDir(this.root));
      while (pending.length > 0) {
        const name = pending.shift() as string;
        const top = stack[stack.length - 1] as FileHandle;
        if (name === '.') continue;
        if (name === '..') {
          if (stack.length === 1) throw outside();
          await (stack.pop() as FileHandle).close();
          names.pop();
          continue;
        }
        blind ||= unseen?.('/' + names.join('/'), name) ?? false;
        const child = procPath(top.fd, name);
        if (pending.length === 0) {
          const st = followFinal ? await lstatOrNull(child) : null;
          if (!st?.isSymbolicLink()) {
            await closeAll(top);
            return new Location(top, name, '/' + [...names, name].join('/'), blind);
          }
        } else {
          try {
            stack.push(await openDir(child));
            names.push(name);
            continue;
          } catch (err) {
            const code = errnoCode(err);
            if (code !== 'ENOTDIR' && code !== 'ELOOP') throw fromErrno(err);
            if (!(await lstatOrNull(child))?.isSymbolicLink()) throw new SluiceError('not-a-directory');
          }
        }
        if (++links > MAX_SYMLINKS) throw new SluiceError('invalid-path', 'Too many levels of symbolic links');
        const target = await fsp.readlink(child);
        if (target.startsWith('/')) {
          // An absolute link is only meaningful if it names a place in this home.
          const inside = this.toVirtual(target);
          if (inside === null) throw outside();
          await closeAll(stack[0]);
          stack.length = 1;
          names.length = 0;
          pending.unshift(...splitVirtual(inside));
        } else {
          pending.unshift(...target.split('/').filter((s) => s !== ''));
        }
      }
      const root = stack[0] as FileHandle;
      const top = stack[stack.length - 1] as FileHandle;
      if (top === root) {
        await closeAll(root);
        return new Location(root, '', '/', blind);
      }
      // The path ended in a directory reached through `..` or a link: re-enter it by name from its parent.
      const last = names[names.length - 1] as string;
      const parent = stack[stack.length - 2] as FileHandle;
      await closeAll(parent);
      return new Location(parent, last, '/' + names.join('/'), blind);
    } catch (err) {
      await closeAll();
      throw blind ? new Unseen(err) : fromErrno(err);
    }
  }

  /** Real absolute path -> virtual path, or null when it is not inside the home. */
  toVirtual(real: string): string | null {
    if (real === this.root) return '/';
    if (!real.startsWith(this.root + '/')) return null;
    return '/' + splitVirtual(real.slice(this.root.length)).join('/');
  }

  /** Run `fn` on a resolved location and always release it (see resolve for `unseen`). */
  async with<T>(
    virtualPath: string,
    followFinal: boolean,
    unseen: ((dir: string, name: string) => boolean) | undefined,
    fn: (loc: Location) => Promise<T>,
  ): Promise<T> {
    const loc = await this.resolve(virtualPath, followFinal, unseen);
    try {
      return await blindly(loc, () => fn(loc));
    } finally {
      await loc.close();
    }
  }
}

/** Work on a location: where it is blind, any failure is the one Unseen refusal. */
export async function blindly<T>(loc: Location, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw loc.blind && !(err instanceof Unseen) ? new Unseen(err) : err;
  }
}

async function openDir(path: string): Promise<FileHandle> {
  return fsp.open(path, DIR_FLAGS);
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await fsp.lstat(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}
