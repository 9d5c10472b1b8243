import { SluiceError, toSluiceError } from '../session/errors.js';
import type { FileInfo } from '../session/file-info.js';
import type { DirectoryListing } from '../session/listing.js';
import type { Session } from '../session/session.js';
import { ScpChannelClosed, type ScpWire } from './wire.js';

/** A run stops when the client says it cannot go on (a reply of 2, or the channel gone). */
class Stopped extends Error {}

/** Directories nested deeper than this are not sent: a tree that deep is a loop of links or an attack. */
const MAX_DEPTH = 64;

/** Zeros in place of a file's bytes that are gone: sent a piece at a time. */
const PAD = Buffer.alloc(64 * 1024);

/**
 * `scp -f PATH...`: we send, the client stores. Each file is a download of
 * the session (permission, audit with SHA-256), streamed with backpressure
 * from the file to the channel. A path that fails is reported to the client
 * (a warning) and the run goes on with the next. Returns how many failed.
 */
export async function send(wire: ScpWire, session: Session, cmd: { paths: readonly string[]; recursive: boolean; preserve: boolean }): Promise<number> {
  let failures = 0;
  const warn = async (path: string, err: unknown): Promise<void> => {
    failures++;
    await wire.fail(`${path}: ${toSluiceError(err).message}`);
  };
  /**
   * `linked`: a symlink met inside a tree, followed to a file but never to a directory (a loop would never end).
   * `asked`: the path as the client gave it, looked at by it: resolved, `f/` lost the final `/` that says a
   * directory is meant, and the file was sent.
   */
  const sendPath = async (path: string, depth: number, linked = false, asked = path): Promise<void> => {
    if (nameOf(path, session).includes('\n')) return warn(path, new SluiceError('failure', 'name contains a newline'));
    let info: FileInfo;
    try {
      info = await session.stat(asked);
    } catch (err) {
      return warn(path, err);
    }
    if (info.type === 'dir') {
      if (linked) return warn(path, new SluiceError('failure', 'link to a directory not followed'));
      if (!cmd.recursive) return warn(path, new SluiceError('failure', 'not a regular file'));
      if (depth >= MAX_DEPTH) return warn(path, new SluiceError('failure', 'too deep'));
      return sendDir(path, info, depth);
    }
    if (info.type !== 'file') return warn(path, new SluiceError('failure', 'not a regular file'));
    return sendFile(path, info);
  };

  const sendTimes = async (info: FileInfo): Promise<boolean> => {
    if (!cmd.preserve) return true;
    await wire.send(`T${seconds(info.mtime)} 0 ${seconds(info.atime)} 0\n`);
    return expectOk(wire);
  };

  const sendFile = async (path: string, info: FileInfo): Promise<void> => {
    let download;
    try {
      download = await session.openRead(path);
    } catch (err) {
      return warn(path, err);
    }
    try {
      if (!(await sendTimes(info)) || !(await announce(wire, 'C', info.mode, download.size, nameOf(path, session)))) {
        await download.abort('refused by client');
        return;
      }
      for await (const chunk of download.readable()) await wire.send(chunk as Buffer);
      if (download.shortBy > 0) {
        // The file shrank while it was read: the client counts on the size announced. The zeros go a piece
        // at a time, each waiting for room as the file's bytes do: made in one buffer, a file of 256 MiB
        // emptied by another session put 256 MiB into the socket of a client that stopped reading.
        for (let left = download.shortBy; left > 0; left -= PAD.length) await wire.send(PAD.subarray(0, Math.min(left, PAD.length)));
        await download.shrunk();
        await warn(path, new SluiceError('failure', 'file changed while read'));
        await expectOk(wire);
        return;
      }
      await wire.ok();
      await download.close();
      await expectOk(wire);
    } catch (err) {
      // Aborted as any transfer of a session whose client left.
      if (err instanceof ScpChannelClosed) {
        await download.abort('connection closed');
        throw err;
      }
      await download.abort(err instanceof Stopped ? 'connection closed' : toSluiceError(err).kind, 'failed');
      if (err instanceof Stopped) throw err;
      // The bytes announced were not all sent: the client cannot find the next line again.
      throw new Stopped();
    }
  };

  const sendDir = async (path: string, info: FileInfo, depth: number): Promise<void> => {
    // Each level of the walk holds its directory open, counted as one of the user's open handles like an SFTP
    // OPENDIR, and reads it as its entries are sent: its names are held as any listing's are, within the
    // process's budget (session/listing.ts). Gathered here up front, a run stalled by its client held them all.
    try {
      session.openHandles.hold();
    } catch (err) {
      return warn(path, err);
    }
    try {
      let listing: DirectoryListing;
      try {
        listing = await session.list(path);
      } catch (err) {
        return warn(path, err);
      }
      try {
        if (!(await sendTimes(info)) || !(await announce(wire, 'D', info.mode, 0, nameOf(path, session)))) return;
        for (;;) {
          let batch: FileInfo[];
          try {
            batch = await listing.read();
          } catch (err) {
            // The client is inside the directory already: it is told, and the directory ends where the reading failed.
            await warn(path, err);
            break;
          }
          if (batch.length === 0) break;
          for (const entry of batch) await sendPath(path === '/' ? `/${entry.name}` : `${path}/${entry.name}`, depth + 1, entry.type === 'symlink');
        }
      } finally {
        await listing.close();
      }
      await wire.send('E\n');
      await expectOk(wire);
    } finally {
      session.openHandles.release();
    }
  };

  try {
    // The client's first OK says it is ready; one that leaves instead stops the run as any other stop does
    // (found by a review: outside this try, each such client was logged as an error with its stack).
    await expectOk(wire);
    for (const path of cmd.paths) {
      // A path the session refuses (an unsafe character, a reserved or too long name) fails alone, as a missing
      // one does: thrown, it ended the whole run with a fatal reply and the paths after it were never sent.
      let resolved: string;
      try {
        resolved = session.resolve(path);
      } catch (err) {
        await warn(path, err);
        continue;
      }
      await sendPath(resolved, 0, false, path);
    }
  } catch (err) {
    if (!(err instanceof Stopped)) throw err;
    failures++;
  }
  return failures;
}

/** `C0644 1234 name` / `D0755 0 name`, and the client's answer to it: false when it refused this one. */
async function announce(wire: ScpWire, type: 'C' | 'D', mode: number, size: number, name: string): Promise<boolean> {
  await wire.send(`${type}${(mode & 0o7777).toString(8).padStart(4, '0')} ${size} ${name}\n`);
  return expectOk(wire);
}

/** true: the client said OK; false: it refused this one (a warning); throws Stopped when it cannot go on. */
async function expectOk(wire: ScpWire): Promise<boolean> {
  const r = await wire.reply();
  if (r === null || (!r.ok && r.fatal)) throw new Stopped();
  return r.ok;
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}

/**
 * The name a path is announced by. The home itself (`~`, `/`) goes by the
 * user's name, as OpenSSH's scp names a home by its last component: `/` is
 * no name a client can store (OpenSSH's refuses it as "unexpected filename").
 */
function nameOf(path: string, session: Session): string {
  return path === '/' ? session.account.name : path.slice(path.lastIndexOf('/') + 1);
}
