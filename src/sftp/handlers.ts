import { SluiceError, notOpenForWriting } from '../session/errors.js';
import { DirectoryListing } from '../session/listing.js';
import type { Session } from '../session/session.js';
import { Download, Upload } from '../session/transfer.js';
import { longname, toAttrs } from './attrs.js';
import {
  FXP, MAX_PACKET, MAX_READ, OPEN_FLAGS, Reader, STATUS, Writer, clampRead, dataPacket, replyDataLength, statusPacket, type Attrs, type Packet,
} from './codec.js';
import type { HandleTable } from './handles.js';

export interface HandlerContext {
  readonly session: Session;
  readonly handles: HandleTable;
  readonly maxHandles: number;
  /**
   * OpenSSH's client sends SYMLINK as (target, link), the reverse of the draft,
   * OpenSSH's server reads it so, and most clients (libssh2, so curl) follow.
   * A few (ssh2, WinSCP, asyncssh, libssh) use the draft's order with a server that does not
   * call itself OpenSSH, which sluice does not: the server picks by client.
   */
  readonly symlinkTargetFirst: boolean;
}

/** A request handler: decode its fields, act through the session, build the one reply. */
type Handler = (ctx: HandlerContext, id: number, body: Reader) => Promise<Buffer>;

/** One request the server serves, as OpenSSH's `struct sftp_handler`. */
export interface RequestSpec {
  /** For the log. */
  readonly name: string;
  /** Changes something on disk (OpenSSH's does_write): logged with each request; a read-only mode would refuse on it. */
  readonly writes: boolean;
  /** Bytes it holds while it runs besides the request and the reply (counted in the connection's budget). */
  readonly holds?: number;
  /**
   * The handle it writes through or acts on after its writes (a CLOSE that
   * commits them, FSETSTAT, FSTAT, fsync, a hash of the handle), read from
   * its fields (after an extension's name): requests naming the same one run
   * in the order received. READs are not among them: a client's pipeline of
   * reads runs at once.
   */
  readonly orderedOn?: (body: Reader) => Buffer;
  /**
   * The paths a request by path acts on, clean (Session.resolve), read from
   * its fields (after an extension's name): it runs after the CLOSEs of files
   * and the changes by path received before it that act on an overlapping
   * path (see SftpChannel.dispatch). A request with neither these nor a
   * handle it is ordered on, READs aside, runs after all of them.
   */
  readonly names?: (ctx: HandlerContext, body: Reader) => string[] | null;
  /** Its first name is a source, and what that held is elsewhere after it (a rename). */
  readonly moves?: true;
  readonly run: Handler;
}

/** An EXTENDED request; VERSION advertises each with its version. */
export interface ExtensionSpec extends RequestSpec {
  readonly version: string;
}

const COPY_CHUNK = 64 * 1024;

export const ok = (id: number): Buffer => statusPacket(id, STATUS.OK, 'Success');

/** A request whose first field is the handle it acts on. */
const handleField = (body: Reader): Buffer => body.bytes();
/** A request whose first field is the path it acts on. */
const pathField = ({ session }: HandlerContext, body: Reader): string[] => [session.resolve(body.string())];
/**
 * A request whose first two fields are paths (a rename, a link). A symlink's
 * target is text relative to the link's directory, taken here as a path:
 * a wrong one only orders the request after more.
 */
const twoPaths = ({ session }: HandlerContext, body: Reader): string[] => [session.resolve(body.string()), session.resolve(body.string())];

/** expand-path's path: "~" and "~/x" are relative to the home, which is the root here. */
function expandTilde(raw: string): string {
  return raw === '~' ? '/' : raw.startsWith('~/') ? raw.slice(1) : raw;
}

function name(id: number, entries: { filename: string; longname: string; attrs: Attrs }[]): Buffer {
  const w = new Writer(FXP.NAME, id).uint32(entries.length);
  for (const e of entries) w.string(e.filename).string(e.longname).attrs(e.attrs);
  return w.finish();
}

function seconds(t: number): Date {
  return new Date(t * 1000);
}

/**
 * The one attribute step (SETSTAT, FSETSTAT, lsetstat): owners cannot change;
 * every other attribute goes through its own permission, on a path or, for an
 * open file, through its descriptor. `follow`: a final symlink of the path is
 * followed (false: the name's own node is changed, and a symlink refused).
 */
async function applyAttrs(s: Session, target: string | Upload | Download | DirectoryListing, a: Attrs, follow = true): Promise<void> {
  if (a.uid !== undefined) return s.refuseOwnerChange(target instanceof DirectoryListing ? target.path : target);
  const times = a.mtime === undefined ? undefined : { mtime: seconds(a.mtime), atime: seconds(a.atime ?? a.mtime) };
  if (typeof target !== 'string') {
    const change = {
      ...(a.permissions === undefined ? {} : { mode: a.permissions }),
      ...times,
      ...(a.size === undefined ? {} : { size: a.size }),
    };
    return target instanceof DirectoryListing ? s.changeOpenDir(target, change) : s.changeOpenFile(target, change);
  }
  if (a.size !== undefined) await s.truncate(target, a.size, follow);
  if (a.permissions !== undefined) await s.chmod(target, a.permissions, follow);
  if (times) await s.setTimes(target, times.mtime, times.atime, follow);
}

/**
 * Whether an OPEN with these flags is an upload: one that may write, and one
 * that empties the file (TRUNC) or must create it (CREAT with EXCL) without
 * WRITE, which OpenSSH does (open(2) with O_RDONLY and those flags). Taken
 * for a download, paramiko's open(name, 'x') (CREAT|EXCL alone) opened an
 * existing file for reading, EXCL unseen, and a missing one was no such
 * file, where OpenSSH refuses the one and creates the other. CREAT alone
 * with READ stays a download, as before: on an existing file it changes
 * nothing, and a user who may only download may still read that way.
 */
function opensForWriting(flags: number): boolean {
  const mustCreate = (flags & OPEN_FLAGS.CREAT) !== 0 && (flags & OPEN_FLAGS.EXCL) !== 0;
  return mustCreate || (flags & (OPEN_FLAGS.WRITE | OPEN_FLAGS.APPEND | OPEN_FLAGS.TRUNC)) !== 0;
}

/** Every request type served but EXTENDED (see specFor); anything else is OP_UNSUPPORTED. */
const REQUESTS: Partial<Record<number, RequestSpec>> = {
  [FXP.OPEN]: {
    name: 'open',
    // Its flags decide, and the session's checks (upload, overwrite) with them: as OpenSSH's, counted as reading.
    writes: false,
    names: pathField,
    async run({ session, handles }, id, body) {
      const path = body.string();
      const flags = body.uint32();
      body.attrs(); // the client's mode for new files is not honoured: files are created 0644
      let transfer: Upload | Download;
      if (opensForWriting(flags)) {
        transfer = await session.openWrite(path, {
          append: (flags & OPEN_FLAGS.APPEND) !== 0,
          exclusive: (flags & OPEN_FLAGS.EXCL) !== 0 && (flags & OPEN_FLAGS.CREAT) !== 0,
          mustExist: (flags & OPEN_FLAGS.CREAT) === 0,
          truncate: (flags & OPEN_FLAGS.TRUNC) !== 0,
          offset: 0,
          // READ|WRITE: a handle read through as well (sshfs opens every O_RDWR file so), as OpenSSH's; so is
          // one without WRITE, which OpenSSH opens O_RDONLY. WRITE alone is O_WRONLY: its READs are EBADF.
          read: (flags & OPEN_FLAGS.READ) !== 0 || (flags & OPEN_FLAGS.WRITE) === 0,
          // Without WRITE (TRUNC, CREAT|EXCL, APPEND alone) OpenSSH opens it O_RDONLY: emptied or made, never written.
          write: (flags & OPEN_FLAGS.WRITE) !== 0,
        });
      } else {
        transfer = await session.openRead(path);
      }
      try {
        return new Writer(FXP.HANDLE, id).bytes(handles.add({ kind: 'file', transfer })).finish();
      } catch (err) {
        // Why it got no handle, for its record: the client closed the channel while it opened (it gave
        // the transfer up, as a session's close aborts it), or a cap refused it (it failed).
        await transfer.abort(err instanceof SluiceError ? err.message : 'no handle', handles.isClosed ? 'aborted' : 'failed');
        throw err;
      }
    },
  },

  [FXP.CLOSE]: {
    name: 'close',
    writes: false,
    // After the WRITEs sent before it: an upload committed without them would be cut short, and answered OK.
    orderedOn: handleField,
    async run({ handles }, id, body) {
      const entry = handles.take(body.bytes());
      if (entry.kind === 'dir') {
        await entry.listing.close();
        return ok(id);
      }
      await entry.transfer.close();
      if (entry.transfer.outcome !== 'ok') throw new SluiceError('failure', 'The file could not be completed');
      return ok(id);
    },
  },

  [FXP.READ]: {
    name: 'read',
    writes: false,
    async run({ handles }, id, body) {
      const transfer = handles.file(body.bytes());
      const offset = body.uint64();
      const length = clampRead(body.uint32());
      const reply = await dataPacket(id, length, (into, at) => transfer.readInto(into, at, length, offset));
      return reply ?? statusPacket(id, STATUS.EOF, 'End of file');
    },
  },

  [FXP.WRITE]: {
    name: 'write',
    writes: true,
    orderedOn: handleField,
    async run(ctx, id, body) {
      const handle = body.bytes();
      const offset = body.uint64();
      await writeThrough(ctx, handle, offset, [body.bytes()]);
      return ok(id);
    },
  },

  [FXP.LSTAT]: {
    name: 'lstat',
    writes: false,
    names: pathField,
    async run({ session }, id, body) {
      return new Writer(FXP.ATTRS, id).attrs(toAttrs(await session.stat(body.string(), false))).finish();
    },
  },

  [FXP.FSTAT]: {
    name: 'fstat',
    writes: false,
    orderedOn: handleField,
    async run({ handles }, id, body) {
      const handle = body.bytes();
      const info = await fileOrDir(handles, handle, (t) => t.info(), (dir) => dir.listing.info());
      return new Writer(FXP.ATTRS, id).attrs(toAttrs(info)).finish();
    },
  },

  [FXP.SETSTAT]: {
    name: 'setstat',
    writes: true,
    names: pathField,
    async run({ session }, id, body) {
      await applyAttrs(session, body.string(), body.attrs());
      return ok(id);
    },
  },

  [FXP.FSETSTAT]: {
    name: 'fsetstat',
    writes: true,
    orderedOn: handleField,
    async run({ session, handles }, id, body) {
      const handle = body.bytes();
      const a = body.attrs();
      await fileOrDir(handles, handle, (t) => applyAttrs(session, t, a), (dir) => applyAttrs(session, dir.listing, a));
      return ok(id);
    },
  },

  [FXP.OPENDIR]: {
    name: 'opendir',
    writes: false,
    names: pathField,
    async run({ session, handles }, id, body) {
      const path = session.resolve(body.string());
      const listing = await session.list(path);
      try {
        return new Writer(FXP.HANDLE, id).bytes(handles.add({ kind: 'dir', listing, path })).finish();
      } catch (err) {
        await listing.close();
        throw err;
      }
    },
  },

  [FXP.READDIR]: {
    name: 'readdir',
    writes: false,
    // Where its directory is (HandleTable.namesAt).
    names: ({ handles }, body) => handles.namesAt(body.bytes().toString('hex')),
    async run({ handles }, id, body) {
      const { listing } = handles.dir(body.bytes());
      // About 100 entries a reply, then EOF: FileZilla and WinSCP loop forever without it.
      const batch = await listing.read(100);
      if (batch.length === 0) return statusPacket(id, STATUS.EOF, 'End of directory');
      const now = new Date();
      return name(id, batch.map((f) => ({ filename: f.name, longname: longname(f, now), attrs: toAttrs(f) })));
    },
  },

  [FXP.REMOVE]: {
    name: 'remove',
    writes: true,
    names: pathField,
    async run({ session }, id, body) {
      await session.remove(body.string());
      return ok(id);
    },
  },

  [FXP.MKDIR]: {
    name: 'mkdir',
    writes: true,
    names: pathField,
    async run({ session }, id, body) {
      const path = body.string();
      body.attrs(); // as OPEN: directories are created 0755
      await session.mkdir(path);
      return ok(id);
    },
  },

  [FXP.RMDIR]: {
    name: 'rmdir',
    writes: true,
    names: pathField,
    async run({ session }, id, body) {
      await session.rmdir(body.string());
      return ok(id);
    },
  },

  [FXP.REALPATH]: {
    name: 'realpath',
    writes: false,
    names: pathField,
    async run({ session }, id, body) {
      // "" and "." are the home, which is "/".
      const path = await session.realpath(body.string() || '.');
      return name(id, [{ filename: path, longname: path, attrs: {} }]);
    },
  },

  [FXP.STAT]: {
    name: 'stat',
    writes: false,
    names: pathField,
    async run({ session }, id, body) {
      return new Writer(FXP.ATTRS, id).attrs(toAttrs(await session.stat(body.string(), true))).finish();
    },
  },

  [FXP.RENAME]: {
    name: 'rename',
    writes: true,
    names: twoPaths,
    moves: true,
    async run({ session }, id, body) {
      await session.rename(body.string(), body.string(), 'fail');
      return ok(id);
    },
  },

  [FXP.READLINK]: {
    name: 'readlink',
    writes: false,
    names: pathField,
    async run({ session }, id, body) {
      const target = await session.readlink(body.string());
      return name(id, [{ filename: target, longname: target, attrs: {} }]);
    },
  },

  [FXP.SYMLINK]: {
    name: 'symlink',
    writes: true,
    names: twoPaths,
    async run({ session, symlinkTargetFirst }, id, body) {
      const first = body.string();
      const second = body.string();
      const [target, link] = symlinkTargetFirst ? [first, second] : [second, first];
      await session.symlink(target, link);
      return ok(id);
    },
  },
};

/** statvfs reply: the session's numbers in blocks of its block size (with a quota, the quota's: `df` in sftp shows it). */
async function statvfs(session: Session, id: number, where: string | Upload | Download | DirectoryListing): Promise<Buffer> {
  const space = await session.space(where);
  const blocks = (bytes: number) => Math.floor(bytes / space.blockSize);
  const w = new Writer(FXP.EXTENDED_REPLY, id);
  // f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_fsid, f_flag, f_namemax
  for (const v of [
    space.blockSize, space.blockSize, blocks(space.totalBytes), blocks(space.freeBytes), blocks(space.availableBytes),
    space.files, space.freeFiles, space.freeFiles, 0, 0, 255,
  ]) w.uint64(v);
  return w.finish();
}

/** Bytes a checksum holds while it reads (see session/checksum.ts). */
const CHECKSUM_HOLDS = 256 * 1024;

/**
 * check-file-name / check-file-handle (draft-ietf-secsh-filexfer-extensions)
 * and paramiko's check-file: the rest of the request after the name or
 * handle, and the one reply layout all three share, whose first string is
 * "check-file" (paramiko reads it so).
 */
async function checkFile(session: Session, target: string | Upload | Download, id: number, body: Reader): Promise<Buffer> {
  const algorithms = body.string().split(',');
  const range = { offset: body.uint64(), length: body.uint64(), blockSize: body.uint32() };
  if (!algorithms.includes('sha256')) throw new SluiceError('unsupported', 'Only sha256 is supported');
  const sum = await session.checksum(target, range);
  const w = new Writer(FXP.EXTENDED_REPLY, id).string('check-file').string('sha256');
  for (const d of sum.digests) w.raw(d);
  return w.finish();
}

const CHECK_FILE_HANDLE: ExtensionSpec = {
  name: 'check-file-handle',
  version: '1',
  writes: false,
  holds: CHECKSUM_HOLDS,
  orderedOn: handleField,
  async run({ session, handles }, id, body) {
    return checkFile(session, handles.file(body.bytes()), id, body);
  },
};

/**
 * Every extension served, by name: VERSION advertises exactly these (see
 * advertisedExtensions), so none is offered without a handler, nor served
 * unannounced.
 */
const EXTENSIONS: Record<string, ExtensionSpec> = {
  'posix-rename@openssh.com': {
    name: 'posix-rename',
    version: '1',
    writes: true,
    names: twoPaths,
    moves: true,
    async run({ session }, id, body) {
      await session.rename(body.string(), body.string(), 'replace');
      return ok(id);
    },
  },
  'statvfs@openssh.com': {
    name: 'statvfs',
    version: '2',
    writes: false,
    // No names, as fstatvfs: the space it tells (the quota's, with one) changes with a commit anywhere.
    async run({ session }, id, body) {
      return statvfs(session, id, body.string());
    },
  },
  'fstatvfs@openssh.com': {
    name: 'fstatvfs',
    version: '2',
    writes: false,
    async run({ session, handles }, id, body) {
      const handle = body.bytes();
      return fileOrDir(handles, handle, (t) => statvfs(session, id, t), (dir) => statvfs(session, id, dir.listing));
    },
  },
  'hardlink@openssh.com': {
    name: 'hardlink',
    version: '1',
    writes: true,
    names: twoPaths,
    async run({ session }, id, body) {
      await session.hardlink(body.string(), body.string());
      return ok(id);
    },
  },
  'fsync@openssh.com': {
    name: 'fsync',
    version: '1',
    writes: true,
    orderedOn: handleField,
    async run({ handles }, id, body) {
      await handles.file(body.bytes()).sync();
      return ok(id);
    },
  },
  'limits@openssh.com': {
    name: 'limits',
    version: '1',
    writes: false,
    names: () => [],
    async run({ maxHandles }, id) {
      return new Writer(FXP.EXTENDED_REPLY, id).uint64(MAX_PACKET).uint64(MAX_READ).uint64(MAX_READ).uint64(maxHandles).finish();
    },
  },
  'expand-path@openssh.com': {
    name: 'expand-path',
    version: '1',
    writes: false,
    names: ({ session }, body) => [session.resolve(expandTilde(body.string()))],
    async run({ session }, id, body) {
      const resolved = await session.realpath(expandTilde(body.string()) || '.');
      return name(id, [{ filename: resolved, longname: resolved, attrs: {} }]);
    },
  },
  'lsetstat@openssh.com': {
    name: 'lsetstat',
    version: '1',
    writes: true,
    names: pathField,
    async run({ session }, id, body) {
      // No look at the type first: a symlink put in the name's place after it was followed by each change
      // (found by the paths review). Each change acts on the node it opens by the name, and refuses a symlink.
      await applyAttrs(session, body.string(), body.attrs(), false);
      return ok(id);
    },
  },
  'check-file-name': {
    name: 'check-file-name',
    version: '1',
    writes: false,
    names: pathField,
    holds: CHECKSUM_HOLDS,
    async run({ session }, id, body) {
      return checkFile(session, body.string(), id, body);
    },
  },
  'check-file-handle': CHECK_FILE_HANDLE,
  // paramiko's SFTPFile.check(): check-file-handle by an older name.
  'check-file': { ...CHECK_FILE_HANDLE, name: 'check-file' },
  'copy-data': {
    name: 'copy-data',
    version: '1',
    writes: true,
    // One chunk at a time (OpenSSH's server copies 64 KiB at a time too).
    holds: COPY_CHUNK,
    orderedOn(body) {
      body.bytes();
      body.uint64();
      body.uint64();
      return body.bytes();
    },
    // OpenSSH `sftp cp`: read-from-handle, read-from-offset, read-data-length (0: to the end), write-to-handle, write-to-offset.
    async run({ session, handles }, id, body) {
      const from = handles.file(body.bytes());
      const fromOffset = body.uint64();
      const length = body.uint64();
      const to = handles.file(body.bytes());
      const toOffset = body.uint64();
      // From an upload opened for reading OpenSSH copies too; here a copy reads a download only (see Session.copy).
      if (from instanceof Upload) throw from.readRefusal ?? new SluiceError('unsupported', 'Copying from a file open for writing is not supported');
      if (!(to instanceof Upload) || !to.writes) throw notOpenForWriting();
      await session.copy(from, to, { from: fromOffset, to: toOffset, length, chunk: COPY_CHUNK });
      return ok(id);
    },
  },
};

/** The VERSION reply's extension-pairs, composed from the table (OpenSSH's compose_extension()). */
export function advertisedExtensions(): [name: string, version: string][] {
  return Object.entries(EXTENSIONS).map(([extension, spec]) => [extension, spec.version]);
}

/**
 * What serves a request: its table entry, or for EXTENDED the extension
 * named first in its body (read from `body`); null when none does. A body
 * too short to name an extension raises BadMessage.
 */
export function specFor(type: number, body: Reader): RequestSpec | null {
  if (type === FXP.EXTENDED) {
    const extension = body.string();
    return Object.hasOwn(EXTENSIONS, extension) ? (EXTENSIONS[extension] ?? null) : null;
  }
  return Object.hasOwn(REQUESTS, type) ? (REQUESTS[type] ?? null) : null;
}

/**
 * Budget a request takes while it runs beyond its own bytes: its reply's
 * data (a READ's) and what its handler holds; a malformed one gets a STATUS.
 */
export function workingBytes(packet: Packet): number {
  let spec: RequestSpec | null = null;
  try {
    spec = specFor(packet.type, new Reader(packet.payload));
  } catch {
    // Too short to name its extension: answered BAD_MESSAGE at once.
  }
  return replyDataLength(packet) + (spec?.holds ?? 0);
}

/**
 * The handle a request is ordered on (RequestSpec.orderedOn), as a map key,
 * so that what goes through one handle keeps its order; null for everything
 * else, malformed requests included (they are answered BAD_MESSAGE without
 * touching a file).
 */
export function handleOrderKey(packet: Packet): string | null {
  try {
    const body = new Reader(packet.payload);
    return specFor(packet.type, body)?.orderedOn?.(body).toString('hex') ?? null;
  } catch {
    return null;
  }
}

/**
 * Whether a request by path may change what a later one by path finds: a
 * name made, moved or removed, attributes set (RequestSpec.writes), or a file
 * an OPEN for writing may create or empty where it lies. A request ordered on
 * a handle is no request by path; a malformed one changes nothing (it is
 * answered BAD_MESSAGE).
 */
export function changesByPath(packet: Packet): boolean {
  try {
    const body = new Reader(packet.payload);
    const spec = specFor(packet.type, body);
    if (spec === null || spec.orderedOn !== undefined) return false;
    if (packet.type !== FXP.OPEN) return spec.writes;
    body.string();
    return opensForWriting(body.uint32());
  } catch {
    return false;
  }
}

/**
 * The paths a request by path acts on (RequestSpec.names), and the source
 * of a rename (RequestSpec.moves). Names null: every path, for a request
 * without names and for one whose names do not read (malformed, a handle
 * that names nothing, a path the session refuses: such a request acts on
 * nothing, and waiting for all costs it little).
 */
export function pathsNamed(ctx: HandlerContext, packet: Packet): { names: string[] | null; moves: string | null } {
  try {
    const body = new Reader(packet.payload);
    const spec = specFor(packet.type, body);
    const names = spec?.names?.(ctx, body) ?? null;
    return { names, moves: (spec?.moves && names?.[0]) ?? null };
  } catch {
    return { names: null, moves: null };
  }
}

/** Consecutive bytes from `offset` through a handle open for writing, in one write. */
export async function writeThrough({ handles }: HandlerContext, handle: Buffer, offset: number, data: readonly Buffer[]): Promise<void> {
  const transfer = handles.file(handle);
  if (!(transfer instanceof Upload)) throw notOpenForWriting();
  await transfer.write(data, offset);
}

export interface WriteRequest {
  readonly id: number;
  readonly handle: Buffer;
  readonly offset: number;
  readonly data: Buffer;
}

/** A WRITE's fields; null for any other request and for a malformed WRITE (answered on its own). */
export function writeRequest(packet: Packet): WriteRequest | null {
  if (packet.type !== FXP.WRITE || packet.id === null) return null;
  try {
    const body = new Reader(packet.payload);
    return { id: packet.id, handle: body.bytes(), offset: body.uint64(), data: body.bytes() };
  } catch {
    return null;
  }
}

/**
 * How many of `writes`, from the first, are WRITEs of one run: each at the
 * offset where the one before it ended, `maxBytes` at most together (but
 * always the first). They can go to the file as one write.
 */
export function leadingRun(writes: readonly (WriteRequest | null)[], maxBytes: number): number {
  const first = writes[0];
  if (!first) return 0;
  let end = first.offset + first.data.length;
  let bytes = first.data.length;
  let n = 1;
  for (const w of writes.slice(1)) {
    if (!w || w.offset !== end || bytes + w.data.length > maxBytes) break;
    end += w.data.length;
    bytes += w.data.length;
    n++;
  }
  return n;
}

async function fileOrDir<T>(
  handles: HandleTable,
  handle: Buffer,
  onFile: (t: Upload | Download) => Promise<T>,
  onDir: (dir: ReturnType<HandleTable['dir']>) => Promise<T>,
): Promise<T> {
  let transfer: Upload | Download | null = null;
  try {
    transfer = handles.file(handle);
  } catch {
    return onDir(handles.dir(handle));
  }
  return onFile(transfer);
}
