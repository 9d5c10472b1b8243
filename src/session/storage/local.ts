import { randomBytes } from 'node:crypto';
import { constants as C, promises as fsp, type Dir, type Dirent, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { SluiceError, Unseen, sessionClosed } from '../errors.js';
import { LazyMap } from '../lazy-collections.js';
import { UPLOAD_TEMP_PREFIX, splitVirtual } from '../paths.js';
import { errnoCode, fromErrno, sys } from './errno.js';
import { kernelFileSystem, type ServerPlaces } from './server-places.js';
import type { WalkTurns } from './walk-turns.js';
import type {
  DirectoryReader,
  HeldNode,
  Location,
  NodeStat,
  NodeType,
  OpenFile,
  StagedFile,
  Storage,
  StorageSpace,
  WriteMode,
} from './storage.js';

/*
 * The local file system, confined to a home: the only proof that a path
 * stays inside it. Node has no openat(2), so we get its guarantee through
 * /proc/self/fd: every directory on the way is opened with O_NOFOLLOW
 * relative to the fd of its parent, and the final operation names
 * `/proc/self/fd/<parent fd>/<name>`. The parent is pinned by inode, so a
 * directory renamed or swapped for a symlink after we looked cannot redirect
 * the operation (no check-then-use race). Symlinks are followed here, by us,
 * one component at a time; one that leads above the home is refused.
 */

const PROC_FD = '/proc/self/fd/';
export const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/**
 * Linux's O_PATH (Node does not export it; open(2) gets the number as is): a
 * descriptor that names a node without opening its content, so it needs no
 * read access. With O_NOFOLLOW it names a final symlink itself.
 */
const O_PATH = 0o10000000;
const MAX_SYMLINKS = 40;
/** Bytes per read of a streamed download. */
const STREAM_CHUNK = 256 * 1024;

/** link(2) failures that say no hard link can be made here, not that the name is taken. */
const NO_LINK = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK', 'EXDEV']);

const outside = () => new SluiceError('permission-denied', 'Permission denied', 'path leads outside the home');

export function procPath(fd: number, name = ''): string {
  return name === '' ? PROC_FD + fd : `${PROC_FD}${fd}/${name}`;
}

/**
 * The storage of a home on this machine; `home` is resolved to its real path
 * first, and refused when it overlaps the server's own files: homes stored
 * before that was checked, or made so by a later change of config.
 */
export async function openLocalStorage(home: string, serverPlaces: ServerPlaces, walks: WalkTurns): Promise<Storage> {
  try {
    const root = await fsp.realpath(home);
    if (!(await fsp.stat(root)).isDirectory()) throw new Error('home is not a directory');
    const conflict = serverPlaces.conflict(root);
    if (conflict) throw new Error(`home ${root} ${conflict}`);
    const kernel = await kernelFileSystem(root);
    if (kernel) throw new Error(`home ${root} is on the kernel's ${kernel} file system`);
    return new LocalStorage(root, walks);
  } catch (err) {
    throw new SluiceError('failure', 'Home directory unavailable', err instanceof Error ? err.message : String(err));
  }
}

/**
 * Whether this process can confine through /proc/self/fd: the magic link of
 * an open directory leads to that very directory. Without it (no /proc
 * mounted, as in some containers) no operation of the local storage works,
 * and none has a fallback that keeps the guarantee.
 */
export async function localStorageUsable(): Promise<boolean> {
  try {
    const fh = await fsp.open('/', DIR_FLAGS);
    try {
      const [own, viaProc] = await Promise.all([fh.stat(), fsp.stat(procPath(fh.fd))]);
      return own.ino === viaProc.ino && own.dev === viaProc.dev;
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

function nodeType(st: Stats): NodeType {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
}

function toNodeStat(st: Stats): NodeStat {
  return {
    type: nodeType(st),
    size: st.size,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    mtime: st.mtime,
    atime: st.atime,
    ctimeMs: st.ctimeMs,
    ino: st.ino,
    dev: st.dev,
  };
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await fsp.lstat(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw fromErrno(err);
  }
}

/** How resolve looks at the final name: not at all, lstat (to follow a symlink), or open for reading. */
type FinalLook = 'none' | 'lstat' | 'read';

/** What the look at the final name found. */
interface FinalFound {
  /** lstat's answer (null: no such name); undefined: not looked up this way. */
  st?: Stats | null;
  /** Opened for reading (never through a final symlink); the Location's first openRead() takes it. */
  opened?: FileHandle;
  /** The name is a symlink, for the walk to follow. */
  symlink: boolean;
}

/**
 * Every open of a name a client gave may meet a device node made on the host
 * (a tty, a tape): its type is known only once it is open (an O_PATH look
 * first, to refuse it unopened, cost a second open per file, some 90 us of
 * a small download's ~2 ms when measured). So the open itself must not act:
 * O_NOCTTY, or a tty opened by the server as a session leader without one
 * (systemd's service, a `setsid` start) became its controlling terminal,
 * whose hangup would then send the server SIGHUP; O_NONBLOCK, or a FIFO or a serial
 * line waiting for its carrier held the open (and a thread of libuv's pool).
 * What a driver's own open does (a tape loaded) is left: see SECURITY.md,
 * homes mounted nodev.
 */
const NO_SIDE_EFFECTS = C.O_NOCTTY | C.O_NONBLOCK;
const READ_FLAGS = C.O_RDONLY | NO_SIDE_EFFECTS | C.O_NOFOLLOW;

/**
 * `directory`: the name was given as a directory's (Storage.resolve), or a
 * link's text led to it so: what is there must be one, a symlink only where
 * the look follows it. Told by the lstat a look makes anyway; without a look
 * ('none'), by one made for it; instead of an open for reading, which
 * O_DIRECTORY would refuse for a final symlink (O_NOFOLLOW) as for a file,
 * ENOTDIR alike: what is named so is never read.
 */
async function lookFinal(dir: FileHandle, name: string, look: FinalLook, directory: boolean): Promise<FinalFound> {
  const path = procPath(dir.fd, name);
  switch (directory && look === 'read' ? 'lstat' : look) {
    case 'none': {
      if (!directory) return { symlink: false };
      const st = await lstatOrNull(path);
      if (st && !st.isDirectory()) throw notADirectory();
      return { st, symlink: false };
    }
    case 'lstat': {
      const st = await lstatOrNull(path);
      const symlink = st?.isSymbolicLink() ?? false;
      if (directory && st && !symlink && !st.isDirectory()) throw notADirectory();
      return { st, symlink };
    }
    case 'read':
      try {
        return { opened: await fsp.open(path, READ_FLAGS), symlink: false };
      } catch (err) {
        // O_NOFOLLOW refuses a final symlink with ELOOP. Any other failure is openRead's to report (it tries again).
        return errnoCode(err) === 'ELOOP' ? { symlink: true } : { symlink: false };
      }
  }
}

/** A name given as a directory's that is none, or under which something else would be made. */
function notADirectory(): SluiceError {
  return new SluiceError('not-a-directory', undefined, 'the path names a directory (it ends in "/")');
}

class LocalFile implements OpenFile {
  constructor(private readonly fh: FileHandle) {}

  async read(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    return (await sys(this.fh.read(target, offset, length, position))).bytesRead;
  }

  async write(data: Buffer | readonly Buffer[], position: number | null): Promise<void> {
    const buffers = Buffer.isBuffer(data) ? [data] : data;
    const length = buffers.reduce((sum, b) => sum + b.length, 0);
    const { bytesWritten } = await sys(this.fh.writev(buffers, position ?? undefined));
    // A disk that fills up part-way answers with the bytes it took and no
    // error; the rest would be acknowledged, hashed and counted unwritten.
    if (bytesWritten !== length) throw new SluiceError('no-space', undefined, `short write: ${bytesWritten} of ${length} bytes`);
  }

  readStream(start: number, end = Infinity, first?: Promise<Buffer>): Readable {
    const fh = this.fh;
    // One pread per chunk, with its errors typed. Each read asks only for what
    // is left before `end`, and reaching it ends the stream without another
    // read: a small file costs one buffer its size and one trip to the thread
    // pool, not two 256 KiB buffers.
    const readAt = (at: number): Promise<Buffer> | undefined => {
      const length = Math.min(STREAM_CHUNK, end - at);
      if (length <= 0) return undefined;
      const buf = Buffer.allocUnsafe(length);
      const chunk = fh.read(buf, 0, length, at).then(({ bytesRead }) => (bytesRead === length ? buf : buf.subarray(0, bytesRead)));
      // A read ahead of a stream destroyed meanwhile: its failure is nobody's.
      chunk.catch(() => undefined);
      return chunk;
    };
    let position = start;
    let ahead = first;
    return new Readable({
      highWaterMark: STREAM_CHUNK,
      read() {
        const chunk = ahead ?? readAt(position);
        ahead = undefined;
        if (!chunk) return void this.push(null);
        chunk.then(
          (buf) => {
            if (buf.length === 0) return void this.push(null);
            position += buf.length;
            // The next chunk is read while this one is used, as fs.ReadStream does not: a download's
            // consumer (the SHA-256, TLS, the socket's write) runs in the same turn as the push, and a
            // stream that asked for more only after it left the event loop asleep through every read
            // (README, Performance). Memory: one chunk more per stream, never more than one read ahead.
            if (!this.destroyed) ahead = readAt(position);
            this.push(buf);
          },
          (err: unknown) => this.destroy(fromErrno(err)),
        );
      },
    });
  }

  async stat(): Promise<NodeStat> {
    return toNodeStat(await sys(this.fh.stat()));
  }

  truncate(size: number): Promise<void> {
    return sys(this.fh.truncate(size));
  }

  sync(): Promise<void> {
    return sys(this.fh.sync());
  }

  chmod(mode: number): Promise<void> {
    return sys(this.fh.chmod(mode));
  }

  setTimes(mtime: Date, atime?: Date): Promise<void> {
    return setTimesOf(this.fh, mtime, atime);
  }

  space(): Promise<StorageSpace> {
    return spaceOf(this.fh);
  }

  close(): Promise<void> {
    return sys(this.fh.close());
  }
}

/** Times of the node open as `fh` (`atime` undefined: left as it is). */
async function setTimesOf(fh: FileHandle, mtime: Date, atime?: Date): Promise<void> {
  await sys(fh.utimes(atime ?? (await sys(fh.stat())).atime, mtime));
}

/**
 * Room on the file system of the node open as `fh`. Node has no fstatfs:
 * statfs(2) of the descriptor's /proc/self/fd magic link reaches that very
 * node, wherever it is now (its path would follow whatever took its name).
 */
async function spaceOf(fh: FileHandle): Promise<StorageSpace> {
  const fs = await sys(fsp.statfs(procPath(fh.fd)));
  return { blockSize: fs.bsize, blocks: fs.blocks, blocksFree: fs.bfree, blocksAvailable: fs.bavail, files: fs.files, filesFree: fs.ffree };
}

class HeldPath implements HeldNode {
  constructor(private readonly fh: FileHandle) {}

  async stat(): Promise<NodeStat> {
    return toNodeStat(await sys(this.fh.stat()));
  }

  close(): Promise<void> {
    return sys(this.fh.close());
  }
}

class LocalDirectory implements DirectoryReader {
  private closed = false;

  constructor(
    private readonly dirFile: FileHandle,
    private readonly dir: Dir,
    private readonly storage: LocalStorage,
  ) {}

  async names(max: number): Promise<string[]> {
    const out: string[] = [];
    while (out.length < max && !this.closed) {
      let entry: Dirent | null;
      try {
        entry = await this.dir.read();
      } catch (err) {
        // Closed while it read (its SFTP channel closed meanwhile): the end, not a failure of the server's
        // to log (found by a review: ERR_DIR_CLOSED logged as a failed handler).
        if (this.closed) break;
        throw fromErrno(err);
      }
      if (entry === null) break;
      if (!entry.name.startsWith(UPLOAD_TEMP_PREFIX)) out.push(entry.name);
    }
    return out;
  }

  async stat(name: string): Promise<NodeStat | null> {
    const st = await lstatOrNull(procPath(this.dirFile.fd, name));
    return st && toNodeStat(st);
  }

  async readlink(name: string): Promise<string | null> {
    return this.storage.linkText(await sys(fsp.readlink(procPath(this.dirFile.fd, name))));
  }

  async whereNow(): Promise<string | null> {
    // As LocalLocation.whereNow, of the directory read itself.
    const real = await fsp.readlink(procPath(this.dirFile.fd)).catch(() => null);
    return real === null ? null : this.storage.placeOf(real);
  }

  async info(): Promise<NodeStat> {
    return toNodeStat(await sys(this.dirFile.stat()));
  }

  // Through the descriptor the names are read from: the directory opened, wherever it is now. Open for
  // reading, so no access is missing; fchmod and futimes need only to own it.
  chmod(mode: number): Promise<void> {
    return sys(this.dirFile.chmod(mode));
  }

  setTimes(mtime: Date, atime?: Date): Promise<void> {
    return setTimesOf(this.dirFile, mtime, atime);
  }

  space(): Promise<StorageSpace> {
    return spaceOf(this.dirFile);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.dir.close().catch(() => undefined);
    await this.dirFile.close().catch(() => undefined);
  }
}

/** A resolved location: the pinned parent directory and the final name in it. */
class LocalLocation implements Location {
  constructor(
    private readonly storage: LocalStorage,
    private readonly dir: FileHandle,
    readonly name: string,
    readonly virtualPath: string,
    readonly blind: boolean,
    /** What resolve's look at the final name found: the first stat() or openRead() takes it. */
    private found: FinalFound,
    /** The name was given as a directory's: only a directory is made under it (see Storage.resolve). */
    private readonly directory: boolean,
  ) {}

  /** Before anything but a directory is made under the name. */
  private makesNoDirectory(): void {
    if (this.directory) throw notADirectory();
  }

  get isRoot(): boolean {
    return this.name === '';
  }

  /** Path for a syscall on the final component (it does not follow a final symlink unless the call does). */
  private get path(): string {
    return procPath(this.dir.fd, this.name);
  }

  async stat(): Promise<NodeStat | null> {
    const { st: found } = this.found;
    if (found !== undefined) {
      this.found = { ...this.found, st: undefined };
      return found && toNodeStat(found);
    }
    // The home's own path is the magic link itself: describe the directory it pins.
    const st = this.isRoot ? await sys(this.dir.stat()) : await lstatOrNull(this.path);
    return st && toNodeStat(st);
  }

  async hold(): Promise<HeldNode | null> {
    // A later look than the lookup's: a stat after it must look again, to compare the name with the hold.
    this.found = { ...this.found, st: undefined };
    try {
      return new HeldPath(await this.open(O_PATH));
    } catch (err) {
      if (err instanceof SluiceError && err.kind === 'not-found') return null;
      throw err;
    }
  }

  /** Open the final component itself (never what it links to). */
  private open(flags: number, mode = 0o644): Promise<FileHandle> {
    // Re-opening the pinned home through its magic link is the one open that must follow.
    return sys(fsp.open(this.path, this.isRoot ? flags & ~C.O_NOFOLLOW : flags | C.O_NOFOLLOW, mode));
  }

  async openRead(): Promise<OpenFile> {
    const { opened } = this.found;
    if (opened) {
      this.found = { ...this.found, opened: undefined };
      return new LocalFile(opened);
    }
    return new LocalFile(await this.open(READ_FLAGS));
  }

  async openWrite(mode: WriteMode): Promise<OpenFile> {
    // As for reads (NO_SIDE_EFFECTS): an open for writing of a FIFO without a reader would otherwise hold a pool thread.
    let flags = (mode.read ? C.O_RDWR : C.O_WRONLY) | NO_SIDE_EFFECTS | (mode.append ? C.O_APPEND : 0);
    if (mode.create) {
      this.makesNoDirectory();
      flags |= C.O_CREAT | C.O_EXCL;
    } else if (mode.truncate) flags |= C.O_TRUNC;
    return new LocalFile(await this.open(flags));
  }

  async stage(mode: number | null): Promise<StagedFile> {
    this.makesNoDirectory();
    const temp = procPath(this.dir.fd, UPLOAD_TEMP_PREFIX + randomBytes(9).toString('base64url'));
    // Read as well as written: a scanned upload is read back before it takes its name (session/scanning.ts).
    const file = new LocalFile(await sys(fsp.open(temp, C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o644)));
    // The old file's mode, where it can be given: the umask narrowed it at the open. Set while the
    // bytes arrive rather than before the client may send them; the file takes its name only after.
    const moded = mode === null ? undefined : file.chmod(mode).catch(() => undefined);
    return {
      file,
      // Nobody else names the file: clients cannot name a staged file, and it has its own random name.
      close: async () => toNodeStat((await Promise.all([sys(fsp.lstat(temp)), file.close()]))[0]),
      commit: async (replace) => {
        await moded;
        if (replace) return sys(fsp.rename(temp, this.path));
        // Node has no renameat2(RENAME_NOREPLACE); link(2) never replaces, so it is the check and the
        // naming in one step, and the hidden name goes after (the staged file's only other name).
        await sys(fsp.link(temp, this.path));
        await sys(fsp.unlink(temp));
      },
      discard: () => sys(fsp.unlink(temp)),
    };
  }

  async openDir(): Promise<DirectoryReader> {
    const dirFile = await this.open(C.O_RDONLY | C.O_DIRECTORY);
    try {
      return new LocalDirectory(dirFile, await sys(fsp.opendir(procPath(dirFile.fd), { bufferSize: 128 })), this.storage);
    } catch (err) {
      await dirFile.close();
      throw err;
    }
  }

  mkdir(): Promise<void> {
    return sys(fsp.mkdir(this.path, 0o755)).then(() => undefined);
  }

  rmdir(): Promise<void> {
    return sys(fsp.rmdir(this.path));
  }

  unlink(): Promise<void> {
    return sys(fsp.unlink(this.path));
  }

  async symlink(text: string): Promise<void> {
    this.makesNoDirectory();
    return sys(fsp.symlink(text, this.path));
  }

  async readlink(): Promise<string | null> {
    return this.storage.linkText(await sys(fsp.readlink(this.path)));
  }

  async link(existing: Location): Promise<void> {
    this.makesNoDirectory();
    return sys(fsp.link(this.storage.own(existing).path, this.path));
  }

  renameTo(target: Location): Promise<void> {
    return sys(fsp.rename(this.path, this.storage.own(target).path));
  }

  async moveNoReplace(target: Location, moved: { dev: number; ino: number }): Promise<boolean> {
    // Node has no renameat2(RENAME_NOREPLACE): link(2) never replaces (and never follows a final
    // symlink, so a symlink moves as itself), then the old name goes, as a staged upload takes its name.
    const own = this.storage.own(target);
    own.makesNoDirectory();
    const to = own.path;
    try {
      await fsp.link(this.path, to);
    } catch (err) {
      // No hard link possible here (a file system without them, a file another account owns under
      // fs.protected_hardlinks, too many links): rename as before, after one more look.
      if (!NO_LINK.has(errnoCode(err) ?? '')) throw fromErrno(err);
      if ((await lstatOrNull(to)) !== null) throw new SluiceError('already-exists');
      await sys(fsp.rename(this.path, to));
      return true;
    }
    // The old name goes only while it still names the file moved: moved away and given to another
    // file meanwhile, it is that file's name now.
    const isMoved = (st: Stats | null) => st !== null && st.ino === moved.ino && st.dev === moved.dev;
    if (!isMoved(await lstatOrNull(this.path))) return false;
    try {
      await sys(fsp.unlink(this.path));
      return true;
    } catch (err) {
      if (err instanceof SluiceError && err.kind === 'not-found') return false;
      // Still at its old name: take back the new one, while it is still the file's, rather than leave it two.
      if (isMoved(await lstatOrNull(to))) await fsp.unlink(to).catch(() => undefined);
      throw err;
    }
  }

  chmod(mode: number): Promise<void> {
    return this.onNode((path) => fsp.chmod(path, mode));
  }

  async setTimes(mtime: Date, atime?: Date): Promise<Date> {
    let kept = mtime;
    await this.onNode(async (path, st) => {
      await fsp.utimes(path, atime ?? st.atime, mtime);
      kept = (await fsp.stat(path)).mtime;
    });
    return kept;
  }

  /**
   * Act on the node through a path that names exactly it: an O_PATH
   * descriptor opened without following, relative to the pinned parent,
   * then its /proc/self/fd magic link, which chmod(2) and utimes(2) follow to
   * that very inode. A path call on the name would follow a symlink swapped
   * in meanwhile; fchmod on a read-only descriptor would need read access,
   * which an owner who took away their own read bit no longer has (and
   * fchmod refuses O_PATH descriptors). A symlink itself is never changed.
   */
  private async onNode(act: (path: string, st: Stats) => Promise<void>): Promise<void> {
    const fh = this.isRoot ? this.dir : await this.open(O_PATH);
    try {
      const st = await sys(fh.stat());
      if (st.isSymbolicLink()) throw new SluiceError('unsupported', 'Attributes of a symlink itself cannot be set');
      await sys(act(procPath(fh.fd), st));
    } finally {
      if (fh !== this.dir) await fh.close();
    }
  }

  async space(): Promise<StorageSpace> {
    // As onNode: statfs(2) follows a final symlink, and one may have been swapped in since resolve
    // looked; the O_PATH descriptor's magic link names the node found under the pinned parent.
    const fh = this.isRoot ? this.dir : await this.open(O_PATH);
    try {
      if ((await sys(fh.stat())).isSymbolicLink()) throw new SluiceError('permission-denied', undefined, 'statfs of a symlink itself');
      return await spaceOf(fh);
    } finally {
      if (fh !== this.dir) await fh.close();
    }
  }

  async whereNow(): Promise<string | null> {
    // The magic link of the pinned directory reads the path it has now (the kernel's d_path). Once the
    // directory is removed it reads its last path and " (deleted)": a name nothing can be made in any more.
    const real = await fsp.readlink(procPath(this.dir.fd)).catch(() => null);
    return real === null ? null : this.storage.placeOf(real);
  }

  async close(): Promise<void> {
    const { opened } = this.found;
    this.found = { symlink: false };
    await Promise.all([opened?.close().catch(() => undefined), this.storage.letGo(this.dir)]);
  }
}

/** How long the home's directory stays open after its last use (see HomeDirectory). */
const HOME_LINGER_MS = 2000;

/**
 * The home's own directory, opened once for a burst of operations rather
 * than once per path: every resolve starts there, and a batch of small files
 * would otherwise pay an open and a close of it per command. Shared by
 * reference count; closed once nobody has used it for HOME_LINGER_MS, so an
 * idle session holds no descriptor for it, and at once when its last user
 * lets go after the storage closed (close), as nothing will use it again.
 * A home renamed away meanwhile is followed only after that pause, as an
 * operation already under way would be.
 */
class HomeDirectory {
  private opening: Promise<FileHandle> | null = null;
  private handle: FileHandle | null = null;
  private users = 0;
  private linger: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly path: string,
    /** Called when the handle is closed after the pause: the storage lets go of what it kept with it. */
    private readonly onExpire: () => void,
  ) {}

  async acquire(): Promise<FileHandle> {
    this.users++;
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
    try {
      this.opening ??= openDir(this.path).then((fh) => (this.handle = fh));
      return await this.opening;
    } catch (err) {
      // Not kept: the next operation tries again.
      this.opening = null;
      this.users--;
      throw err;
    }
  }

  /** Whether `fh` is the home's handle; if so, one user lets go of it. */
  release(fh: FileHandle): boolean {
    if (fh !== this.handle) return false;
    if (--this.users === 0) {
      if (this.closed) this.expire();
      else {
        this.linger = setTimeout(() => this.expire(), HOME_LINGER_MS);
        this.linger.unref();
      }
    }
    return true;
  }

  /**
   * The storage closed: no pause from here on. A closed session's handle
   * lingered HOME_LINGER_MS, and a client opening and closing session
   * channels (an SSH exec each) held one per channel of its last 2 s (found
   * by a review: 577 descriptors of one home open behind 10 live channels).
   */
  close(): void {
    this.closed = true;
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
    if (this.users === 0) this.expire();
  }

  private expire(): void {
    this.linger = null;
    const fh = this.handle;
    if (this.users > 0 || fh === null) return;
    this.handle = null;
    this.opening = null;
    void fh.close().catch(() => undefined);
    this.onExpire();
  }
}

/** A directory of the kept chain: its name in the one before it, and its identity for the check. */
interface ChainLink {
  readonly name: string;
  readonly fh: FileHandle;
  /** dev and ino of the open directory (null: unknown, the link is never trusted). */
  readonly identity: Promise<Stats | null>;
}

/** Deepest chain of directories kept: bounds the descriptors an idle session holds. */
const MAX_CHAIN = 16;
/** The last directories a walk keeps open (LocalStorage.walk): a kept chain and the one below it. */
const WALK_WINDOW = MAX_CHAIN + 1;
/** Beyond the window, a walk keeps open every this many directories on its way down. */
const WALK_CHECKPOINT = 64;

/**
 * The directories the last resolve walked through below the home, kept open
 * for the next one: a batch of files in one directory would otherwise pay an
 * open and a close of every directory on the way per file. A kept directory
 * is trusted again only after a look at its name in its parent (lstat, which
 * never follows a link) shows that very directory (dev and ino; an open
 * descriptor keeps the inode from being reused): the same proof the open
 * with O_NOFOLLOW gave, renewed on every resolve, so a directory renamed,
 * removed, or swapped for a link since is never used by its old name. The
 * kept handles are shared by reference count with the locations that use
 * them, and let go of with the home's handle after its pause.
 */
class DirectoryChain {
  private links: ChainLink[] = [];
  private readonly users = new LazyMap<FileHandle, number>();

  /** The kept links that the directory names `dirs` begin with. */
  prefix(dirs: readonly string[]): ChainLink[] {
    let k = 0;
    while (k < dirs.length && k < this.links.length && this.links[k]?.name === dirs[k]) k++;
    return this.links.slice(0, k);
  }

  /** One more user of `fh`, which must be closed through release() (a handle the caller has just opened counts from zero). */
  take(fh: FileHandle): void {
    this.users.set(fh, (this.users.get(fh) ?? 0) + 1);
  }

  /** One user lets go of `fh`; it is closed once nobody, the chain included, uses it. */
  release(fh: FileHandle): void {
    const n = this.users.get(fh) ?? 0;
    if (n > 1) return void this.users.set(fh, n - 1);
    this.users.delete(fh);
    void fh.close().catch(() => undefined);
  }

  /** Keep `links` in place of the chain kept so far. */
  keep(links: ChainLink[]): void {
    const old = this.links;
    this.links = links;
    for (const l of links) this.take(l.fh);
    for (const l of old) this.release(l.fh);
  }
}

/** Linux's PATH_MAX, its NUL included: the longest path the kernel writes out (d_path). */
const PATH_MAX = 4096;

export class LocalStorage implements Storage {
  /**
   * What PATH_MAX leaves after the home's real path. A directory's place is
   * read back whole from its /proc/self/fd link (whereNow), which fails past
   * PATH_MAX (ENAMETOOLONG): a working directory made there by MKD one level
   * at a time then read as moved, and its listings were refused (found by the
   * paths review). The kernel itself has no such bound for a walk by
   * descriptors, nor for depth, and neither has this storage (its walks hold
   * a bounded number of descriptors): a tree moved down into another may lie
   * deeper, unreachable until moved back up.
   */
  readonly maxPathBytes: number;
  private readonly home: HomeDirectory;
  private readonly chain = new DirectoryChain();
  private closed = false;

  /**
   * @param root real path of the home (already resolved with realpath).
   * @param walks turns to walk, shared with the other sessions of the home.
   */
  constructor(
    private readonly root: string,
    private readonly walks: WalkTurns,
  ) {
    this.home = new HomeDirectory(root, () => this.dropChain());
    this.maxPathBytes = PATH_MAX - 1 - Buffer.byteLength(root);
  }

  /** Let go of a directory handle of a resolve or a location (closed once unused). Never rejects. */
  async letGo(fh: FileHandle): Promise<void> {
    if (this.home.release(fh)) return;
    this.chain.release(fh);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.walks.abandon(this.root, this, sessionClosed());
    this.dropChain();
    this.home.close();
  }

  resolve(virtualPath: string, followFinal: boolean, unseen?: (dir: string, name: string) => boolean): Promise<Location> {
    return this.find(virtualPath, followFinal ? 'lstat' : 'none', unseen);
  }

  resolveForRead(virtualPath: string, unseen?: (dir: string, name: string) => boolean): Promise<Location> {
    return this.find(virtualPath, 'read', unseen);
  }

  /** `look`: none leaves a final symlink be; lstat and read follow it. */
  private async find(virtualPath: string, look: FinalLook, unseen?: (dir: string, name: string) => boolean): Promise<Location> {
    if (this.closed) throw sessionClosed();
    const parts = splitVirtual(virtualPath);
    const directory = parts.length > 0 && virtualPath.endsWith('/');
    const blindAt = (dirs: readonly string[], name: string) => unseen?.('/' + dirs.join('/'), name) ?? false;
    let home: FileHandle;
    try {
      home = await this.home.acquire();
    } catch (err) {
      throw fromErrno(err);
    }
    const kept = await this.keptPrefix(home, parts, look, directory);
    if (kept && 'location' in kept) {
      let blind = false;
      for (let i = 0; i < parts.length; i++) blind ||= blindAt(parts.slice(0, i), parts[i] as string);
      const { fh, found } = kept.location;
      void this.letGo(home);
      return new LocalLocation(this, fh, parts[parts.length - 1] as string, '/' + parts.join('/'), blind, found, directory);
    }
    let done: () => void;
    try {
      // Again here: the session may have closed while this resolve looked at the kept directories.
      if (this.closed) throw sessionClosed();
      done = await this.walks.take(this.root, this);
    } catch (err) {
      for (const l of kept?.links ?? []) this.chain.release(l.fh);
      void this.letGo(home);
      throw err;
    }
    try {
      return await this.walk(home, kept?.links ?? [], parts, look, directory, blindAt);
    } finally {
      done();
    }
  }

  /**
   * The longest prefix of the path's directories that the kept chain still
   * holds, each checked by a look at its name (in parallel; the final name
   * is looked up alongside when every directory is kept). The caller holds
   * one use of every link returned; with `location`, only of that handle.
   * Null when nothing is kept or a check fails: the path is walked afresh.
   */
  private async keptPrefix(
    home: FileHandle,
    parts: readonly string[],
    look: FinalLook,
    directory: boolean,
  ): Promise<{ links: ChainLink[] } | { location: { fh: FileHandle; found: FinalFound } } | null> {
    if (parts.includes('.') || parts.includes('..')) return null;
    const dirs = parts.slice(0, -1);
    const links = this.chain.prefix(dirs);
    if (links.length === 0) return null;
    for (const l of links) this.chain.take(l.fh);
    const parents = [home, ...links.map((l) => l.fh)];
    const top = parents[parents.length - 1] as FileHandle;
    const whole = links.length === dirs.length;
    // Opened (look: read) in the same step as the checks, but returned, and so read, only once they pass.
    const final = whole ? lookFinal(top, parts[parts.length - 1] as string, look, directory) : undefined;
    const checks = links.map(async (l, i) => {
      const [now, was] = await Promise.all([lstatOrNull(procPath((parents[i] as FileHandle).fd, l.name)), l.identity]);
      // The same directory, and with the same access: a fresh walk opens each directory for
      // reading, so one whose mode or owner changed is walked again, to be refused as then.
      return (
        now !== null &&
        was !== null &&
        now.isDirectory() &&
        now.ino === was.ino &&
        now.dev === was.dev &&
        now.mode === was.mode &&
        now.uid === was.uid &&
        now.gid === was.gid
      );
    });
    const [ok, found] = await Promise.all([
      Promise.all(checks).then((all) => all.every(Boolean), () => false),
      final?.catch(() => undefined),
    ]);
    // A final symlink is for the walk to follow; a failed look at the final name, for the walk to report.
    const held = ok && (!whole || (found !== undefined && !found.symlink));
    if (!held) {
      void found?.opened?.close().catch(() => undefined);
      for (const l of links) this.chain.release(l.fh);
      return null;
    }
    if (!whole) return { links };
    for (const l of links) if (l.fh !== top) this.chain.release(l.fh);
    return { location: { fh: top, found: found as FinalFound } };
  }

  /**
   * Resolve by opening each directory in turn from `links` (kept, checked,
   * held) on, following symlinks. Only the last WALK_WINDOW directories stay
   * open, and every WALK_CHECKPOINT-th on the way down; the rest are named in
   * `names`: a path 2,000 directories deep held 2,000 descriptors for as
   * long as one request lasted, and ten sessions exhausted the process's. A
   * `..` (from a link's text) that climbs past the open ones reopens the
   * directory by name from the nearest one still open, as a fresh walk
   * would: at most WALK_CHECKPOINT opens, not the whole path again (two
   * links leading to each other from 2,000 deep cost 81,000 opens a stat).
   */
  private async walk(
    home: FileHandle,
    links: ChainLink[],
    parts: string[],
    look: FinalLook,
    named: boolean,
    blindAt: (dirs: readonly string[], name: string) => boolean,
  ): Promise<Location> {
    const pending = parts.slice(links.length);
    /** The final name must be a directory: named so, or reached through a link whose text ends in `/`. */
    let directory = named;
    // dirs[i] is the directory names[0..i] names, open or (null) let go; the home is below them all.
    const dirs: (FileHandle | null)[] = links.map((l) => l.fh);
    const names: string[] = links.map((l) => l.name);
    let followed = 0;
    let blind = false;
    for (let i = 0; i < links.length; i++) blind ||= blindAt(names.slice(0, i), names[i] as string);
    // Only a walk by plain names, no link and no `..`, leaves a chain worth keeping.
    let plain = true;
    const kept = (i: number) => i >= dirs.length - WALK_WINDOW || (i + 1) % WALK_CHECKPOINT === 0;
    const enter = (fh: FileHandle): void => {
      dirs.push(fh);
      const out = dirs.length - 1 - WALK_WINDOW;
      const left = dirs[out];
      if (left && !kept(out)) {
        dirs[out] = null;
        void this.letGo(left);
      }
    };
    const up = (): void => {
      names.pop();
      const left = dirs.pop();
      if (left) void this.letGo(left);
    };
    // The current directory, opened again by name from the nearest open one below it if a climb left it closed.
    const current = async (): Promise<FileHandle> => {
      let open = dirs.length - 1;
      while (open >= 0 && dirs[open] === null) open--;
      let dir = open < 0 ? home : (dirs[open] as FileHandle);
      for (let i = open + 1; i < dirs.length; i++) {
        const next = await openDir(procPath(dir.fd, names[i] as string));
        this.chain.take(next);
        dirs[i] = next;
        // Past it, as enter() would have let it go on the way down.
        if (i - 1 > open && !kept(i - 1)) {
          dirs[i - 1] = null;
          void this.letGo(dir);
        }
        dir = next;
      }
      return dir;
    };
    // Directories left behind are closed without waiting: nothing uses them again, and a close cannot fail in a way that matters.
    const closeAll = async (keep?: FileHandle) => {
      const open = [home, ...dirs].filter((h): h is FileHandle => h !== null && h !== keep);
      await Promise.all(open.map((h) => this.letGo(h)));
    };
    const at = (dir: FileHandle, name: string, path: string, found: FinalFound = { symlink: false }) => {
      if (plain && names.length <= MAX_CHAIN) this.keepChain([home, ...(dirs as FileHandle[])], names, links);
      void closeAll(dir);
      return new LocalLocation(this, dir, name, path, blind, found, directory);
    };
    try {
      while (pending.length > 0) {
        // A walk under way stops at its next directory once the session is gone (see close).
        if (this.closed) throw sessionClosed();
        const name = pending.shift() as string;
        if (name === '.') continue;
        if (name === '..') {
          if (names.length === 0) throw outside();
          plain = false;
          up();
          continue;
        }
        const top = await current();
        blind ||= blindAt(names, name);
        const child = procPath(top.fd, name);
        if (pending.length === 0) {
          const found = await lookFinal(top, name, look, directory);
          if (!found.symlink) return at(top, name, '/' + [...names, name].join('/'), found);
        } else {
          try {
            const fh = await openDir(child);
            this.chain.take(fh);
            enter(fh);
            names.push(name);
            continue;
          } catch (err) {
            const code = errnoCode(err);
            if (code !== 'ENOTDIR' && code !== 'ELOOP') throw err;
            if (!(await lstatOrNull(child))?.isSymbolicLink()) throw new SluiceError('not-a-directory');
          }
        }
        plain = false;
        if (++followed > MAX_SYMLINKS) throw new SluiceError('invalid-path', 'Too many levels of symbolic links');
        const target = await fsp.readlink(child);
        // The kernel reads a link's text as a path: ending in `/`, it names a directory too.
        if (pending.length === 0 && target.endsWith('/')) directory = true;
        if (target.startsWith('/')) {
          // An absolute link is only meaningful if it names a place in this home.
          const inside = this.toVirtual(target);
          if (inside === null) throw outside();
          await Promise.all(dirs.splice(0).filter((h): h is FileHandle => h !== null).map((h) => this.letGo(h)));
          names.length = 0;
          pending.unshift(...splitVirtual(inside));
        } else {
          pending.unshift(...target.split('/').filter((s) => s !== ''));
        }
      }
      if (names.length === 0) return at(home, '', '/');
      // The path ended in a directory reached through `..` or a link: re-enter it by name from its parent.
      const path = '/' + names.join('/');
      const last = names[names.length - 1] as string;
      up();
      return at(await current(), last, path);
    } catch (err) {
      await closeAll();
      throw blind ? new Unseen(fromErrno(err)) : fromErrno(err);
    }
  }

  /**
   * Keep the directories below the home that a plain walk opened (stack[1..], named by `names`), for the
   * next resolve: only while this session holds one of its home's places for a kept chain (WalkTurns).
   */
  private keepChain(stack: readonly FileHandle[], names: readonly string[], reused: readonly ChainLink[]): void {
    if (names.length === 0 || names.length > MAX_CHAIN || this.closed) return;
    if (!this.walks.keepChain(this.root, this)) return;
    this.chain.keep(
      names.map((name, i) => {
        const fh = stack[i + 1] as FileHandle;
        const known = reused[i];
        if (known?.fh === fh) return known;
        const identity = fh.stat().catch(() => null);
        return { name, fh, identity };
      }),
    );
  }

  /** The kept chain closed, and its place given back to the home. */
  private dropChain(): void {
    this.chain.keep([]);
    this.walks.dropChain(this.root, this);
  }

  /** Real absolute path -> virtual path, or null when it is not inside the home. */
  private toVirtual(real: string): string | null {
    if (real === this.root) return '/';
    if (!real.startsWith(this.root + '/')) return null;
    return '/' + splitVirtual(real.slice(this.root.length)).join('/');
  }

  /** The virtual path of a real absolute path, or null when it is not inside the home. */
  placeOf(real: string): string | null {
    return real.startsWith('/') ? this.toVirtual(real) : null;
  }

  /** A symlink's text as Location.readlink gives it. */
  linkText(text: string): string | null {
    return text.startsWith('/') ? this.toVirtual(text) : text;
  }

  /** A location of this storage: two storages' locations are never mixed. */
  own(loc: Location): LocalLocation {
    if (!(loc instanceof LocalLocation)) throw new SluiceError('unsupported', undefined, 'locations of two storages');
    return loc;
  }
}

function openDir(path: string): Promise<FileHandle> {
  return fsp.open(path, DIR_FLAGS);
}
