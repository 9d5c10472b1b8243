import { createHash, randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { constants as C, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { lstat, mkdir, opendir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Kept, QuarantineStore } from '../session/scanning.js';
import type { TurnQueue } from '../session/turns.js';

/** The one key of the keeps' turns (QuarantineDir.keep): one keep at a time, on the whole server. */
const KEEP = 'keep';
/** A keep waits for its turn as long as the ones before it take: no deadline of its own (the upload's scanTimeout is past). */
const NEVER = new AbortController().signal;
// Every keep waiting in the process listens on it, as many as infected uploads end at once: no leak to warn of.
setMaxListeners(0, NEVER);

/** How many bytes the quarantine keeps at most (uploads.quarantineMaxBytes, uploads.quarantineUserMaxBytes); 0: none. */
export interface QuarantineLimits {
  readonly totalBytes: number;
  readonly userBytes: number;
}

/**
 * Infected uploads, kept for the administrator in a directory outside every
 * home: DIR/USER@ID/TIME-RANDOM, owner-only. The name is the server's alone (a
 * client's name could be too long for the file system, or anything else);
 * the upload's path, size and SHA-256 are in the `quarantined` audit record.
 * A user's directory is named by its id too, never given twice: a removed
 * user's name given to a new user gave it the old one's directory, its files
 * counted against the new user's share and mixed with its own (found by a
 * review). The old one's files stay where they are, evidence, counted in all.
 *
 * Bounded: a file that would take the user's share past `userBytes`, or the
 * whole past `totalBytes`, is not kept (its record says so and why), so
 * infected uploads, which never count against a quota, cannot fill the disk.
 * What is kept is counted once per user directory and then kept as a running
 * total; a directory whose modification time moved (another worker's keep,
 * an administrator's clean-up) is counted again, so no keep walks it all.
 * A time is trusted only once it is older than STAMP_GRAIN_NS was when it
 * was read (as git trusts an index entry only if it is not "racily clean").
 */
export class QuarantineDir implements QuarantineStore {
  /** Bytes per user directory, as of its modification time (`stamp`), read at `seenAt` (ns since the epoch). */
  private readonly known = new Map<string, { stamp: bigint; bytes: number; seenAt: bigint }>();
  constructor(
    private readonly dir: string,
    private readonly limits: QuarantineLimits,
    /**
     * One keep at a time, each seeing the ones before it: the coordinator's turns (Coordinator.keepTurns), so
     * that the limits hold however many workers keep (issue #14: each worker took its own turns, and two
     * keeps at the same moment on two workers were both kept past the user's share).
     */
    private readonly turns: TurnQueue,
  ) {}

  async keep(open: () => Readable, info: { user: string; userId: number; path: string; size: number }): Promise<Kept> {
    const release = await this.turns.take(KEEP, NEVER);
    try {
      return await this.keepNow(open, info);
    } finally {
      release();
    }
  }

  private async keepNow(open: () => Readable, { user, userId, size }: { user: string; userId: number; size: number }): Promise<Kept> {
    const hash = createHash('sha256');
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    const notKept = async (why: string, fault?: true): Promise<Kept> => {
      await pipeline(open(), hashing, new Writable({ write: (_c, _e, cb) => cb() }));
      return { kept: false, why, sha256: hash.digest('hex'), ...(fault ? { fault } : {}) };
    };
    const userFull = `the user's quarantine is full (uploads.quarantineUserMaxBytes: ${this.limits.userBytes})`;
    const allFull = `the quarantine is full (uploads.quarantineMaxBytes: ${this.limits.totalBytes})`;
    // Too large whatever is kept: nothing to look at on disk (quarantineMaxBytes: 0 makes no directory).
    if (size > this.limits.userBytes || size > this.limits.totalBytes) return notKept(size > this.limits.userBytes ? userFull : allFull);
    // A stored name is one (USER_NAME); a name that is none could lead out of the quarantine.
    if (user === '' || /[/\0]/.test(user)) return notKept(`the user name ${JSON.stringify(user)} is no directory name`, true);
    if (!Number.isSafeInteger(userId) || userId < 1) return notKept(`the user id ${JSON.stringify(userId)} is no stored user's`, true);
    // No user name has an @ (USER_NAME), so no directory of the old layout (DIR/USER) is any user's now.
    const mineDir = `${user}@${userId}`;
    const root = await this.openRoot();
    if (typeof root === 'string') return notKept(root, true);
    try {
      const total = await this.used(root);
      const mine = this.known.get(mineDir)?.bytes ?? 0;
      const full = mine + size > this.limits.userBytes ? userFull : total + size > this.limits.totalBytes ? allFull : null;
      if (full !== null) return notKept(full);
      await mkdir(procPath(root.fd, mineDir), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      const dir = await openOwnDir(procPath(root.fd, mineDir), join(this.dir, mineDir));
      if (typeof dir === 'string') return notKept(dir, true);
      try {
        const stamp = new Date().toISOString().replace(/[:.]/g, '');
        const name = `${stamp}-${randomBytes(8).toString('hex')}`;
        const file = await fsp.open(procPath(dir.fd, name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
        try {
          await pipeline(open(), hashing, file.createWriteStream());
        } catch (err) {
          await rm(procPath(dir.fd, name), { force: true }).catch(() => undefined);
          throw err;
        } finally {
          await file.close().catch(() => undefined);
        }
        const seenAt = nowNs();
        const st = await dir.stat({ bigint: true });
        this.known.set(mineDir, { stamp: st.mtimeNs, bytes: mine + size, seenAt });
        return { kept: true, file: join(this.dir, mineDir, name), sha256: hash.digest('hex') };
      } finally {
        await dir.close();
      }
    } finally {
      await root.close();
    }
  }

  /**
   * The quarantine directory, made if need be, opened without following a
   * symlink, for each keep (one an administrator removed is made again); or
   * why not, when it is not this server's own (see openOwnDir).
   */
  private async openRoot(): Promise<FileHandle | string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    return openOwnDir(this.dir, this.dir);
  }

  /** Bytes kept now, all users; a user directory is counted only when it changed since last seen. */
  private async used(root: FileHandle): Promise<number> {
    const seen = new Set<string>();
    let total = 0;
    for (const name of await readdir(procPath(root.fd))) {
      const path = procPath(root.fd, name);
      const seenAt = nowNs();
      // Not followed: a symlink there is no user's directory, and what it leads to is none of the quarantine.
      const st = await lstat(path, { bigint: true }).catch(() => null);
      if (!st?.isDirectory()) continue;
      seen.add(name);
      let entry = this.known.get(name);
      if (entry?.stamp !== st.mtimeNs || entry.stamp + STAMP_GRAIN_NS >= entry.seenAt) {
        entry = { stamp: st.mtimeNs, bytes: await bytesIn(path), seenAt };
        this.known.set(name, entry);
      }
      total += entry.bytes;
    }
    for (const name of this.known.keys()) if (!seen.has(name)) this.known.delete(name);
    return total;
  }
}

/**
 * How long after a directory's change another may leave it the same modification time. File systems take
 * the time of a change from a clock that moves a tick at a time (Linux's coarse clock: 1-10 ms), except
 * where Linux 6.13's multigrain timestamps give a change after a look a time of its own (ext4, xfs, btrfs,
 * tmpfs). Found by the second review of the keeps' turns: a worker trusted its count of a directory whose
 * time another worker's keep, in the same tick, had left as it was, and kept past the user's share (on
 * ramfs, as on ext4 before 6.13, in about half of such rounds). A time that recent when read is counted
 * again at the next keep: a user's keeps in a row count that user's directory each time.
 */
const STAMP_GRAIN_NS = 50_000_000n;

/** The time now, in ns since the epoch, as file times are read. */
function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
const procPath = (fd: number, name = '') => (name === '' ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`);

/**
 * A directory of the quarantine, opened with O_NOFOLLOW, every step after
 * through its descriptor (/proc/self/fd), so no name swapped meanwhile can
 * redirect a keep; or why it is refused: a symlink (where an infected file
 * would go is for whoever made it to say), or a directory another user owns
 * or may write in (they could swap its entries). `shown` names it.
 */
async function openOwnDir(path: string, shown: string): Promise<FileHandle | string> {
  let dir: FileHandle;
  try {
    dir = await fsp.open(path, DIR_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // With O_DIRECTORY, Linux answers ENOTDIR for a symlink (to a directory too): told apart by lstat, for the message only.
    if (code !== 'ELOOP' && code !== 'ENOTDIR') throw err;
    const symlink = code === 'ELOOP' || (await lstat(path).catch(() => null))?.isSymbolicLink() === true;
    return symlink ? `${shown} is a symlink, not followed: the quarantine keeps files only in directories of its own` : `${shown} is not a directory`;
  }
  const st = await dir.stat();
  const uid = process.getuid?.() ?? st.uid;
  if (st.uid !== uid || (st.mode & 0o022) !== 0) {
    await dir.close();
    return `${shown} is not this server's own (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}): the quarantine keeps files only in directories no one else may change`;
  }
  return dir;
}

/** The sizes of the files directly in `dir`. */
async function bytesIn(dir: string): Promise<number> {
  let bytes = 0;
  for await (const entry of await opendir(dir)) {
    if (!entry.isFile()) continue;
    const st = await lstat(join(dir, entry.name)).catch(() => null);
    bytes += st?.size ?? 0;
  }
  return bytes;
}
