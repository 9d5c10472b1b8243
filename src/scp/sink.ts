import type { Writable } from 'node:stream';
import { toSluiceError, type SluiceError } from '../session/errors.js';
import { parentOf } from '../session/paths.js';
import type { Session } from '../session/session.js';
import type { Upload } from '../session/transfer.js';
import { ScpProtocolError, type ScpWire } from './wire.js';
import { drainedOrEnded } from '../wire/drained.js';

/** Data is handed to the upload in pieces of at most this, each taken from the SSH window as it goes. */
const PIECE = 256 * 1024;

interface Times {
  mtime: Date;
  atime: Date;
}

/** A file or directory line: `C0644 1234 name` / `D0755 0 name`. */
const ENTRY = /^([CD])([0-7]{4}) (\d{1,16}) (.+)$/;
/** `T<mtime> 0 <atime> 0`: seconds and microseconds, as scp -p sends them. */
const TIMES = /^T(\d{1,12}) (\d{1,6}) (\d{1,12}) (\d{1,6})$/;

/**
 * `scp -t TARGET`: the client sends, we store. Every file goes through the
 * session (permissions, quota, atomic upload, audit) exactly as an FTP STOR
 * or an SFTP write would. A file that fails is answered with a warning and
 * the run goes on, as OpenSSH's scp does; a broken protocol ends it.
 * Returns how many files or directories failed (the exit status follows).
 */
export async function receive(
  wire: ScpWire,
  session: Session,
  cmd: { target: string; recursive: boolean; preserve: boolean; targetIsDirectory: boolean },
): Promise<number> {
  let failures = 0;
  const target = session.resolve(cmd.target);
  // Looked at, and written to as a file, by the path as given: resolved, `new/` lost the final `/` that says
  // a directory is meant, and a file `new` was made where OpenSSH's scp refuses (open(2) with O_CREAT: EISDIR).
  const targetIsDir = await isDirectory(session, cmd.target);
  if (cmd.targetIsDirectory && !targetIsDir) {
    await wire.fail(`${cmd.target}: Not a directory`, true);
    return 1;
  }
  /** Directories entered with D, innermost last; each is where the next names land. */
  const dirs: { path: string; times: Times | null }[] = [];
  let times: Times | null = null;
  await wire.ok();
  for (;;) {
    const line = await wire.line();
    if (line === null) break;
    const kind = line[0];
    if (kind === '\x01' || kind === '\x02') {
      // The client's own failure with a file it meant to send: its message is for its user, and the run's
      // status says it failed, as OpenSSH's sink counts it (a fatal one ends the run).
      failures++;
      if (kind === '\x02') break;
      continue;
    }
    if (kind === 'E' && line === 'E') {
      const dir = dirs.pop();
      if (!dir) throw new ScpProtocolError('E without D');
      if (cmd.preserve && dir.times && !(await preserveDir(wire, session, dir.path, dir.times))) failures++;
      await wire.ok();
      continue;
    }
    if (kind === 'T') {
      const t = TIMES.exec(line);
      if (!t) throw new ScpProtocolError('malformed T line');
      times = { mtime: new Date(Number(t[1]) * 1000), atime: new Date(Number(t[3]) * 1000) };
      await wire.ok();
      continue;
    }
    const m = ENTRY.exec(line);
    if (!m) throw new ScpProtocolError('expected C, D, E or T');
    const [, type, modeText, sizeText, name] = m as unknown as [string, 'C' | 'D', string, string, string];
    // A name is one component: the client picks names in the directory we are in, never a path
    // (a backslash separates in virtual paths as a slash does: `..\x` would climb).
    if (name === '.' || name === '..' || /[/\\]/.test(name)) throw new ScpProtocolError('unexpected file name');
    const size = Number(sizeText);
    if (!Number.isSafeInteger(size)) throw new ScpProtocolError('file size out of range');
    const into = dirs.at(-1)?.path ?? (targetIsDir ? target : null);
    const path = into === null ? target : join(into, name);
    const entryTimes = cmd.preserve ? times : null;
    times = null;
    if (type === 'D') {
      if (!cmd.recursive) throw new ScpProtocolError('directory received without -r');
      const made = await ensureDirectory(session, path);
      if (made !== null) {
        // OpenSSH's scp stops here too: the client would otherwise send the whole tree into nothing.
        await wire.fail(`${path}: ${made.message}`, true);
        return failures + 1;
      }
      dirs.push({ path, times: entryTimes });
      await wire.ok();
      continue;
    }
    if (!(await receiveFile(wire, session, into === null ? cmd.target : path, size, cmd.preserve ? Number.parseInt(modeText, 8) : null, entryTimes))) failures++;
  }
  return failures;
}

/** One C entry: the client waits for our OK before it sends the bytes. */
async function receiveFile(wire: ScpWire, session: Session, path: string, size: number, mode: number | null, times: Times | null): Promise<boolean> {
  let upload: Upload;
  try {
    upload = await session.openWrite(path);
  } catch (err) {
    await wire.fail(`${path}: ${toSluiceError(err).message}`);
    return false;
  }
  await wire.ok();
  const sink = upload.writable();
  let failed: SluiceError | null = null;
  sink.on('error', (err) => (failed ??= toSluiceError(err)));
  // Where the rest of a file goes once it failed: still read (the next line follows it), and dropped at the upload's rate.
  let leftovers: Writable | null = null;
  let left = size;
  while (left > 0) {
    const piece = await wire.chunk(Math.min(left, PIECE));
    if (!piece) {
      sink.destroy();
      await upload.abort('connection closed');
      throw new ScpProtocolError('channel ended inside a file');
    }
    left -= piece.length;
    if (!failed) {
      if (!sink.write(piece)) await drainedOrEnded(sink, 'error');
    } else {
      leftovers ??= upload.leftovers();
      if (!leftovers.write(piece)) await drainedOrEnded(leftovers, 'error');
    }
  }
  // The client's own status for the bytes it sent: not 0 means it could not read all of its file.
  const sent = await wire.reply();
  if (sent === null) {
    sink.destroy();
    await upload.abort('connection closed');
    throw new ScpProtocolError('channel ended after a file');
  }
  if (!failed) failed = await finished(sink);
  if (!failed && !sent.ok) {
    // The client could not read all of its file: nothing is kept, and it already told its user.
    await upload.abort(`client: ${sent.message.slice(0, 200)}`, 'failed');
    await wire.ok();
    return false;
  }
  if (!failed && (mode !== null || times)) failed = await preserveFile(session, upload, mode, times);
  if (failed) {
    sink.destroy();
    await upload.abort(failed.kind, 'failed');
  } else {
    // Rejects when the bytes cannot land (the quota at the end, the rename into place).
    failed = await upload.close().then(
      () => null,
      (err: unknown) => toSluiceError(err),
    );
  }
  if (failed) {
    await wire.fail(`${path}: ${failed.message}`);
    return false;
  }
  await wire.ok();
  return true;
}

/** -p: mode and times where the user may change them; where not, silently not (no client asked for more). */
async function preserveFile(session: Session, upload: Upload, mode: number | null, times: Times | null): Promise<SluiceError | null> {
  const may = session.permissionsOver(upload);
  const change = {
    ...(mode !== null && may.has('chmod') ? { mode } : {}),
    ...(times && may.has('chtimes') ? times : {}),
  };
  if (change.mode === undefined && change.mtime === undefined) return null;
  return session.changeOpenFile(upload, change).then(
    () => null,
    (err: unknown) => toSluiceError(err),
  );
}

async function preserveDir(wire: ScpWire, session: Session, path: string, times: Times): Promise<boolean> {
  if (!session.permissionsIn(parentOf(path)).has('chtimes')) return true;
  try {
    await session.setTimes(path, times.mtime, times.atime);
    return true;
  } catch (err) {
    await wire.fail(`${path}: ${toSluiceError(err).message}`);
    return false;
  }
}

/** null: the directory is there (made now, or already). */
async function ensureDirectory(session: Session, path: string): Promise<SluiceError | null> {
  if (await isDirectory(session, path)) return null;
  try {
    await session.mkdir(path);
    return null;
  } catch (err) {
    return toSluiceError(err);
  }
}

async function isDirectory(session: Session, path: string): Promise<boolean> {
  return session.stat(path).then(
    (info) => info.type === 'dir',
    () => false,
  );
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** The upload's stream flushed: null, or why it failed. */
function finished(sink: Writable): Promise<SluiceError | null> {
  return new Promise((resolve) => {
    sink.end((err?: Error | null) => resolve(err ? toSluiceError(err) : null));
  });
}
