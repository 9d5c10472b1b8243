import { SluiceError } from '../session/errors.js';
import type { Session } from '../session/session.js';
import { Download, Upload } from '../session/transfer.js';
import { longname, toAttrs } from './attrs.js';
import { FXP, MAX_PACKET, MAX_READ, OPEN_FLAGS, STATUS, Writer, clampRead, statusPacket, type Attrs, type Reader } from './codec.js';
import type { HandleTable } from './handles.js';

export interface HandlerContext {
  readonly session: Session;
  readonly handles: HandleTable;
  readonly maxHandles: number;
  /**
   * OpenSSH's client sends SYMLINK as (target, link), the reverse of the draft,
   * OpenSSH's server reads it so, and most clients (libssh2, so curl) follow.
   * A few (ssh2, WinSCP) use the draft's order with a server that does not
   * call itself OpenSSH, which sluice does not: the server picks by client.
   */
  readonly symlinkTargetFirst: boolean;
}

/** A request handler: decode its fields, act through the session, build the one reply. */
type Handler = (ctx: HandlerContext, id: number, body: Reader) => Promise<Buffer>;

const ok = (id: number) => statusPacket(id, STATUS.OK, 'Success');

function name(id: number, entries: { filename: string; longname: string; attrs: Attrs }[]): Buffer {
  const w = new Writer(FXP.NAME, id).uint32(entries.length);
  for (const e of entries) w.string(e.filename).string(e.longname).attrs(e.attrs);
  return w.finish();
}

function seconds(t: number): Date {
  return new Date(t * 1000);
}

/** SETSTAT and friends: every attribute through its own permission; owners cannot change. */
async function applyAttrs(s: Session, path: string, a: Attrs): Promise<void> {
  if (a.uid !== undefined) throw new SluiceError('permission-denied', 'Changing the owner is not allowed');
  if (a.size !== undefined) await s.truncate(path, a.size);
  if (a.permissions !== undefined) await s.chmod(path, a.permissions);
  if (a.mtime !== undefined) await s.setTimes(path, seconds(a.mtime), seconds(a.atime ?? a.mtime));
}

const requests: Partial<Record<number, Handler>> = {
  async [FXP.OPEN]({ session, handles }, id, body) {
    const path = body.string();
    const flags = body.uint32();
    body.attrs(); // the client's mode for new files is not honoured: files are created 0644
    let transfer: Upload | Download;
    if (flags & (OPEN_FLAGS.WRITE | OPEN_FLAGS.APPEND)) {
      transfer = await session.openWrite(path, {
        append: (flags & OPEN_FLAGS.APPEND) !== 0,
        exclusive: (flags & OPEN_FLAGS.EXCL) !== 0 && (flags & OPEN_FLAGS.CREAT) !== 0,
        mustExist: (flags & OPEN_FLAGS.CREAT) === 0,
        truncate: (flags & OPEN_FLAGS.TRUNC) !== 0,
        offset: 0,
      });
    } else {
      transfer = await session.openRead(path);
    }
    try {
      return new Writer(FXP.HANDLE, id).bytes(handles.add({ kind: 'file', transfer })).finish();
    } catch (err) {
      await transfer.abort('too many handles', 'failed');
      throw err;
    }
  },

  async [FXP.CLOSE]({ handles }, id, body) {
    const entry = handles.take(body.bytes());
    if (entry.kind === 'dir') {
      await entry.listing.close();
      return ok(id);
    }
    await entry.transfer.close();
    if (entry.transfer.outcome !== 'ok') throw new SluiceError('failure', 'The file could not be completed');
    return ok(id);
  },

  async [FXP.READ]({ handles }, id, body) {
    const transfer = handles.file(body.bytes());
    const offset = body.uint64();
    const length = clampRead(body.uint32());
    if (!(transfer instanceof Download)) throw new SluiceError('permission-denied', 'Handle not open for reading');
    const data = await transfer.read(offset, length);
    if (data.length === 0) return statusPacket(id, STATUS.EOF, 'End of file');
    return new Writer(FXP.DATA, id).bytes(data).finish();
  },

  async [FXP.WRITE]({ handles }, id, body) {
    const transfer = handles.file(body.bytes());
    const offset = body.uint64();
    const data = body.bytes();
    if (!(transfer instanceof Upload)) throw new SluiceError('permission-denied', 'Handle not open for writing');
    await transfer.write(data, offset);
    return ok(id);
  },

  async [FXP.STAT]({ session }, id, body) {
    return new Writer(FXP.ATTRS, id).attrs(toAttrs(await session.stat(body.string(), true))).finish();
  },

  async [FXP.LSTAT]({ session }, id, body) {
    return new Writer(FXP.ATTRS, id).attrs(toAttrs(await session.stat(body.string(), false))).finish();
  },

  async [FXP.FSTAT]({ session, handles }, id, body) {
    const handle = body.bytes();
    const info = await fileOrDir(handles, handle, (t) => t.info(), (path) => session.stat(path));
    return new Writer(FXP.ATTRS, id).attrs(toAttrs(info)).finish();
  },

  async [FXP.SETSTAT]({ session }, id, body) {
    await applyAttrs(session, body.string(), body.attrs());
    return ok(id);
  },

  async [FXP.FSETSTAT]({ session, handles }, id, body) {
    const handle = body.bytes();
    const a = body.attrs();
    await fileOrDir(
      handles,
      handle,
      (t) => {
        if (a.uid !== undefined) throw new SluiceError('permission-denied', 'Changing the owner is not allowed');
        return session.changeOpenFile(t, {
          ...(a.permissions === undefined ? {} : { mode: a.permissions }),
          ...(a.mtime === undefined ? {} : { mtime: seconds(a.mtime), atime: seconds(a.atime ?? a.mtime) }),
          ...(a.size === undefined ? {} : { size: a.size }),
        });
      },
      (path) => applyAttrs(session, path, a),
    );
    return ok(id);
  },

  async [FXP.OPENDIR]({ session, handles }, id, body) {
    const path = session.resolve(body.string());
    const listing = await session.list(path);
    try {
      return new Writer(FXP.HANDLE, id).bytes(handles.add({ kind: 'dir', listing, path })).finish();
    } catch (err) {
      await listing.close();
      throw err;
    }
  },

  async [FXP.READDIR]({ handles }, id, body) {
    const { listing } = handles.dir(body.bytes());
    // About 100 entries a reply, then EOF: FileZilla and WinSCP loop forever without it.
    const batch = await listing.read(100);
    if (batch.length === 0) return statusPacket(id, STATUS.EOF, 'End of directory');
    const now = new Date();
    return name(id, batch.map((f) => ({ filename: f.name, longname: longname(f, now), attrs: toAttrs(f) })));
  },

  async [FXP.REMOVE]({ session }, id, body) {
    await session.remove(body.string());
    return ok(id);
  },

  async [FXP.MKDIR]({ session }, id, body) {
    const path = body.string();
    body.attrs();
    await session.mkdir(path);
    return ok(id);
  },

  async [FXP.RMDIR]({ session }, id, body) {
    await session.rmdir(body.string());
    return ok(id);
  },

  async [FXP.REALPATH]({ session }, id, body) {
    // "" and "." are the home, which is "/".
    const path = await session.realpath(body.string() || '.');
    return name(id, [{ filename: path, longname: path, attrs: {} }]);
  },

  async [FXP.RENAME]({ session }, id, body) {
    await session.rename(body.string(), body.string(), 'fail');
    return ok(id);
  },

  async [FXP.READLINK]({ session }, id, body) {
    const target = await session.readlink(body.string());
    return name(id, [{ filename: target, longname: target, attrs: {} }]);
  },

  async [FXP.SYMLINK]({ session, symlinkTargetFirst }, id, body) {
    const first = body.string();
    const second = body.string();
    const [target, link] = symlinkTargetFirst ? [first, second] : [second, first];
    await session.symlink(target, link);
    return ok(id);
  },
};

/** statvfs reply; with a quota, the numbers describe the quota (as `df` in sftp should). */
async function statvfs(session: Session, id: number, path: string): Promise<Buffer> {
  const fs = await session.statfs(path);
  const q = session.quota();
  const bsize = fs.blockSize || 4096;
  let blocks = fs.blocks;
  let free = fs.blocksAvailable;
  if (q.bytes > 0) {
    blocks = Math.floor(q.bytes / bsize);
    free = Math.max(0, Math.floor((q.bytes - q.usedBytes) / bsize));
  }
  let files = fs.files;
  let ffree = fs.filesFree;
  if (q.files > 0) {
    files = q.files;
    ffree = Math.max(0, q.files - q.usedFiles);
  }
  const w = new Writer(FXP.EXTENDED_REPLY, id);
  for (const v of [bsize, bsize, blocks, Math.min(fs.blocksFree, free), free, files, ffree, ffree, 0, 0, 255]) w.uint64(v);
  return w.finish();
}

const extensions: Record<string, Handler> = {
  async 'posix-rename@openssh.com'({ session }, id, body) {
    await session.rename(body.string(), body.string(), 'replace');
    return ok(id);
  },
  async 'statvfs@openssh.com'({ session }, id, body) {
    return statvfs(session, id, body.string());
  },
  async 'fstatvfs@openssh.com'({ session, handles }, id, body) {
    const handle = body.bytes();
    const path = await fileOrDir(handles, handle, async (t) => t.path, async (p) => p);
    return statvfs(session, id, path);
  },
  async 'hardlink@openssh.com'({ session }, id, body) {
    await session.hardlink(body.string(), body.string());
    return ok(id);
  },
  async 'fsync@openssh.com'({ handles }, id, body) {
    await handles.file(body.bytes()).sync();
    return ok(id);
  },
  async 'limits@openssh.com'({ maxHandles }, id) {
    return new Writer(FXP.EXTENDED_REPLY, id).uint64(MAX_PACKET).uint64(MAX_READ).uint64(MAX_READ).uint64(maxHandles).finish();
  },
  async 'expand-path@openssh.com'({ session }, id, body) {
    const raw = body.string();
    // "~" and "~/x" are relative to the home, which is the root here.
    const path = raw === '~' ? '/' : raw.startsWith('~/') ? raw.slice(1) : raw;
    const resolved = await session.realpath(path || '.');
    return name(id, [{ filename: resolved, longname: resolved, attrs: {} }]);
  },
  async 'lsetstat@openssh.com'({ session }, id, body) {
    const path = body.string();
    const attrs = body.attrs();
    const info = await session.stat(path, false);
    if (info.type === 'symlink') throw new SluiceError('unsupported', 'Attributes of a symlink itself cannot be set');
    await applyAttrs(session, path, attrs);
    return ok(id);
  },
};

/** Names and versions advertised in VERSION. */
export const EXTENSIONS: [string, string][] = [
  ['posix-rename@openssh.com', '1'],
  ['statvfs@openssh.com', '2'],
  ['fstatvfs@openssh.com', '2'],
  ['hardlink@openssh.com', '1'],
  ['fsync@openssh.com', '1'],
  ['limits@openssh.com', '1'],
  ['expand-path@openssh.com', '1'],
  ['lsetstat@openssh.com', '1'],
];

requests[FXP.EXTENDED] = async (ctx, id, body) => {
  const extension = body.string();
  const handler = Object.hasOwn(extensions, extension) ? extensions[extension] : undefined;
  if (!handler) return statusPacket(id, STATUS.OP_UNSUPPORTED, 'Unsupported extension');
  return handler(ctx, id, body);
};

export function handlerFor(type: number): Handler | undefined {
  return Object.hasOwn(requests, type) ? requests[type] : undefined;
}

async function fileOrDir<T>(
  handles: HandleTable,
  handle: Buffer,
  onFile: (t: Upload | Download) => Promise<T>,
  onDir: (path: string) => Promise<T>,
): Promise<T> {
  let transfer: Upload | Download | null = null;
  try {
    transfer = handles.file(handle);
  } catch {
    return onDir(handles.dir(handle).path);
  }
  return onFile(transfer);
}
