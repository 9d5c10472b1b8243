import type { Readable } from 'node:stream';

/*
 * The session layer's only way to the files: virtual locations in, typed
 * results out. Every failure leaves a Storage as a SluiceError (errno, or
 * whatever a backend has, is translated once, inside it), and nothing of the
 * backend (descriptors, handles, stat objects, host paths) crosses this line,
 * so another backend (object storage) can implement it. local.ts is the one
 * implementation today.
 */

export type NodeType = 'file' | 'dir' | 'symlink' | 'other';

/** Metadata of one node, protocol- and backend-neutral. */
export interface NodeStat {
  readonly type: NodeType;
  readonly size: number;
  /** Full st_mode, file-type bits included. */
  readonly mode: number;
  /** Names the node has; a file with more than one is changed under all of them. */
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: Date;
  readonly atime: Date;
  /** The node's last change (bytes, size, mode, times, names), in ms: set by the kernel, never by a client. */
  readonly ctimeMs: number;
  /** Stable identity (MLSD `unique`, the quota's claims and locks): dev and ino together. */
  readonly ino: number;
  readonly dev: number;
}

/** One key per node, for as long as it exists. */
export function nodeKey(st: NodeStat): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * The inode of a nodeKey: what names the file on every machine that mounts
 * the same file system (NFS, CephFS), where dev is each machine's own number
 * for its mount.
 */
export function inodeOfKey(key: string): string {
  return key.slice(key.indexOf(':') + 1);
}

/** Room on the storage under a location. */
export interface StorageSpace {
  readonly blockSize: number;
  readonly blocks: number;
  /** Free blocks, including those only the superuser may use. */
  readonly blocksFree: number;
  /** Free blocks for us. */
  readonly blocksAvailable: number;
  readonly files: number;
  readonly filesFree: number;
}

/** Something that names a node while it is held, whatever happens to its names meanwhile. */
export interface HeldNode {
  stat(): Promise<NodeStat>;
  close(): Promise<void>;
}

/** An open file. Positions are bytes from the start; null writes at the end (append). */
export interface OpenFile extends HeldNode {
  /**
   * Up to `length` bytes at `position`, into `target` from `offset` (a caller
   * may read straight into a reply framed around them): the bytes read,
   * fewer at the end, 0 beyond it.
   */
  read(target: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** Resolves once every byte is in the file; several buffers land one after another, in one call. */
  write(data: Buffer | readonly Buffer[], position: number | null): Promise<void>;
  /**
   * From `start` to the end of the file, or to `end` (exclusive) where the
   * file reaches it, with backpressure; it errors with SluiceErrors. The file
   * stays open. `first`: a read of the bytes from `start` (not past `end`)
   * already under way, whose buffer (empty at the end of the file) is the
   * stream's first chunk.
   */
  readStream(start: number, end?: number, first?: Promise<Buffer>): Readable;
  truncate(size: number): Promise<void>;
  sync(): Promise<void>;
  chmod(mode: number): Promise<void>;
  /** `atime` undefined: left as it is. */
  setTimes(mtime: Date, atime?: Date): Promise<void>;
  /** Room on the storage the open file lies on, whatever its name leads to now. */
  space(): Promise<StorageSpace>;
}

/**
 * A file written under a name no client sees, put in place of its location
 * whole by commit() (after the file is closed), or dropped by discard().
 */
export interface StagedFile {
  readonly file: OpenFile;
  /**
   * Closes `file` and describes it as closed. The storage may look it up by
   * its hidden name while the close runs, so both cost one wait.
   */
  close(): Promise<NodeStat>;
  /**
   * Give the file its name. `replace` false: only while the name is free,
   * in one step with the check (a name taken meanwhile fails already-exists).
   */
  commit(replace: boolean): Promise<void>;
  discard(): Promise<void>;
}

/** An open directory: names in batches, entries described on demand. */
export interface DirectoryReader {
  /** Up to `max` names, in the storage's own order; none at the end. Staged files are never named. */
  names(max: number): Promise<string[]>;
  /** The entry itself (a symlink is not followed); null when it has gone. */
  stat(name: string): Promise<NodeStat | null>;
  /** A symlink entry's text, in the terms of Location.readlink. */
  readlink(name: string): Promise<string | null>;
  /** Where the directory read is now, as Location.whereNow says of a location's directory. */
  whereNow(): Promise<string | null>;
  /** The directory read itself, as chmod changes it. */
  info(): Promise<NodeStat>;
  /** Permission bits of the directory read itself, the one opened, whatever its name leads to now. */
  chmod(mode: number): Promise<void>;
  /** Its times (`atime` undefined: left as it is), as chmod. */
  setTimes(mtime: Date, atime?: Date): Promise<void>;
  /** Room on the storage the directory read lies on, as chmod finds it. */
  space(): Promise<StorageSpace>;
  close(): Promise<void>;
}

/** How an existing or new file is opened for writing in place. */
export interface WriteMode {
  /** Make the file; it must not exist. Otherwise it must. */
  create: boolean;
  /** Empty the existing file first. */
  truncate: boolean;
  /** Every write goes to the end of the file. */
  append: boolean;
  /** Open for reading too (the client reads back through its handle): needs the file's read bit, as OpenSSH's O_RDWR open. */
  read: boolean;
}

/**
 * A resolved virtual path: its final name is pinned where it was found, so
 * a directory renamed or swapped on the way afterwards cannot redirect what
 * is done here. Operations act on the final name itself, never on what a
 * symlink there points to (resolve followed it already, when asked to).
 * The owner must close() it.
 */
export interface Location {
  /** Final component; '' for the home itself. */
  readonly name: string;
  /** Canonical virtual path, symlinks resolved. */
  readonly virtualPath: string;
  /**
   * A name on the way (this one included) was looked up where the caller
   * may not learn which names exist: whatever happens next must not tell.
   */
  readonly blind: boolean;
  readonly isRoot: boolean;

  /**
   * The node, or null when the name does not exist. The first call may be
   * answered from the lookup resolve made of the final name just before (one
   * trip to the disk fewer for the check that opens an operation); every
   * later call looks again.
   */
  stat(): Promise<NodeStat | null>;
  /** Hold the node, needing no access to its content; null when the name does not exist. */
  hold(): Promise<HeldNode | null>;
  /** The final name opened for reading, never through a final symlink (resolve followed one already). */
  openRead(): Promise<OpenFile>;
  openWrite(mode: WriteMode): Promise<OpenFile>;
  /** A new file to replace this name whole; `mode`: its permission bits (null: the storage's default). */
  stage(mode: number | null): Promise<StagedFile>;
  openDir(): Promise<DirectoryReader>;
  mkdir(): Promise<void>;
  rmdir(): Promise<void>;
  /** Remove a name that is not a directory. */
  unlink(): Promise<void>;
  /** Make this name a symlink with `text` (relative, as written). */
  symlink(text: string): Promise<void>;
  /**
   * The symlink's text as the user may read it: relative text as stored, an
   * absolute target as its virtual path, null when it names a place outside
   * the home.
   */
  readlink(): Promise<string | null>;
  /** Make this name another link to the file at `existing` (same storage). */
  link(existing: Location): Promise<void>;
  /** Move this name to `target` (same storage), replacing what is there. */
  renameTo(target: Location): Promise<void>;
  /**
   * Move this name (not a directory), naming the file `moved`, to `target`
   * only if no name is there: fails with already-exists otherwise, whatever
   * took the name since it was looked at (the check and the naming are one
   * step). False when the old name was not removed here (another moved or
   * removed it meanwhile): the file then has one name more.
   */
  moveNoReplace(target: Location, moved: { dev: number; ino: number }): Promise<boolean>;
  /** Permission bits of the node; refused on a symlink. Needs no access to its content. */
  chmod(mode: number): Promise<void>;
  /**
   * Times of the node (`atime` undefined: left as it is); refused on a symlink. Needs no access to its
   * content. The modification time the node keeps: a file system keeps what it can hold.
   */
  setTimes(mtime: Date, atime?: Date): Promise<Date>;
  space(): Promise<StorageSpace>;
  /**
   * Where the directory holding this name is now, as a virtual path. It is
   * pinned, so a rename of it (or of a directory above it) since resolve has
   * carried this location along, and virtualPath no longer says where it is.
   * Null when it lies in the home no more (moved out or removed on the host).
   */
  whereNow(): Promise<string | null>;
  /** Let go of the pinned directory; never rejects, so callers need not wait for it. */
  close(): Promise<void>;
}

/** One user's home. */
export interface Storage {
  /**
   * The longest virtual path it holds, in UTF-8 bytes: the session refuses
   * a longer one as too long (paths.ts resolveVirtual), whatever the operation.
   */
  readonly maxPathBytes: number;
  /**
   * Resolve a clean virtual path. `followFinal` decides whether a symlink as
   * the last component is followed (stat, open) or acted on (lstat, remove).
   * A path ending in `/` (paths.ts lookupPath) names a directory, as in POSIX:
   * a final name that is there must be one (a symlink is one only where it is
   * followed), or resolve fails with not-a-directory, and no file, symlink or
   * link is made under a free one (the Location refuses it so); a directory is.
   * `unseen(dir, name)` says whether looking `name` up in `dir` is something
   * the caller may not learn the outcome of: once one such lookup is made,
   * every failure is the same Unseen refusal, and the Location is `blind`.
   */
  resolve(virtualPath: string, followFinal: boolean, unseen?: (dir: string, name: string) => boolean): Promise<Location>;
  /**
   * As resolve(virtualPath, true, unseen), for a download: the final name is
   * opened for reading where resolve would look it up, in the same step, and
   * the Location's first openRead() hands out that descriptor (one trip to
   * the disk fewer). Nothing is read before the path is proven inside the home.
   */
  resolveForRead(virtualPath: string, unseen?: (dir: string, name: string) => boolean): Promise<Location>;
  /**
   * The session is over: resolves waiting for their turn to walk, those
   * that would wait for one and those asked later are refused, and a walk
   * under way stops at its next directory. A resolve answered from the
   * directories kept open still completes, as a change under way does;
   * locations already resolved (a transfer's, ending) stay usable.
   */
  close(): void;
}

/** A home's storage, for a user's sessions; fails (typed) when the home is unusable. */
export type StorageOpener = (home: string) => Promise<Storage>;
