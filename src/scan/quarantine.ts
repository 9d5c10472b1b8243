import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, opendir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Kept, QuarantineStore } from '../session/scanning.js';

/** How many bytes the quarantine keeps at most (uploads.quarantineMaxBytes, uploads.quarantineUserMaxBytes); 0: none. */
export interface QuarantineLimits {
  readonly totalBytes: number;
  readonly userBytes: number;
}

/**
 * Infected uploads, kept for the administrator in a directory outside every
 * home: DIR/USER/TIME-RANDOM, owner-only. The name is the server's alone (a
 * client's name could be too long for the file system, or anything else);
 * the upload's path, size and SHA-256 are in the `quarantined` audit record.
 *
 * Bounded: a file that would take the user's share past `userBytes`, or the
 * whole past `totalBytes`, is not kept (its record says so and why), so
 * infected uploads, which never count against a quota, cannot fill the disk.
 * What is kept is counted once per user directory and then kept as a running
 * total; a directory whose modification time moved (another worker's keep,
 * an administrator's clean-up) is counted again, so no keep walks it all.
 */
export class QuarantineDir implements QuarantineStore {
  /** Bytes per user directory, as of its modification time. */
  private readonly known = new Map<string, { stamp: bigint; bytes: number }>();
  /** One keep at a time in this process: each sees the ones before it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly limits: QuarantineLimits,
  ) {}

  keep(open: () => Readable, info: { user: string; path: string; size: number }): Promise<Kept> {
    const run = this.queue.then(() => this.keepNow(open, info));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async keepNow(open: () => Readable, { user, size }: { user: string; size: number }): Promise<Kept> {
    const total = await this.used();
    const mine = this.known.get(user)?.bytes ?? 0;
    const why =
      mine + size > this.limits.userBytes
        ? `the user's quarantine is full (uploads.quarantineUserMaxBytes: ${this.limits.userBytes})`
        : total + size > this.limits.totalBytes
          ? `the quarantine is full (uploads.quarantineMaxBytes: ${this.limits.totalBytes})`
          : null;
    const hash = createHash('sha256');
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    if (why !== null) {
      await pipeline(open(), hashing, new Writable({ write: (_c, _e, cb) => cb() }));
      return { kept: false, why, sha256: hash.digest('hex') };
    }
    const dir = join(this.dir, user);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '');
    const file = join(dir, `${stamp}-${randomBytes(8).toString('hex')}`);
    try {
      await pipeline(open(), hashing, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    } catch (err) {
      await rm(file, { force: true }).catch(() => undefined);
      throw err;
    }
    const st = await stat(dir, { bigint: true });
    this.known.set(user, { stamp: st.mtimeNs, bytes: mine + size });
    return { kept: true, file, sha256: hash.digest('hex') };
  }

  /** Bytes kept now, all users; a user directory is counted only when it changed since last seen. */
  private async used(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      names = [];
    }
    const seen = new Set<string>();
    let total = 0;
    for (const name of names) {
      const path = join(this.dir, name);
      const st = await stat(path, { bigint: true }).catch(() => null);
      if (!st?.isDirectory()) continue;
      seen.add(name);
      let entry = this.known.get(name);
      if (entry?.stamp !== st.mtimeNs) {
        entry = { stamp: st.mtimeNs, bytes: await bytesIn(path) };
        this.known.set(name, entry);
      }
      total += entry.bytes;
    }
    for (const name of this.known.keys()) if (!seen.has(name)) this.known.delete(name);
    return total;
  }
}

/** The sizes of the files directly in `dir`. */
async function bytesIn(dir: string): Promise<number> {
  let bytes = 0;
  for await (const entry of await opendir(dir)) {
    if (!entry.isFile()) continue;
    const st = await stat(join(dir, entry.name)).catch(() => null);
    bytes += st?.size ?? 0;
  }
  return bytes;
}
