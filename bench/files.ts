/**
 * The data the workloads move and the checks that it arrived whole: random
 * bytes (nothing on the way can compress them), SHA-256 for large files,
 * byte-for-byte comparison for trees of small ones.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const MiB = 1024 * 1024;
export const SMALL_FILE_BYTES = 4096;

/** Thrown when a transfer's result differs from its source: the bench then exits non-zero. */
export class VerifyError extends Error {}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 4 * MiB }), hash);
  return hash.digest('hex');
}

/** A file of `size` random bytes; its SHA-256. */
export async function makeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(async function* () {
    for (let left = size; left > 0; left -= 4 * MiB) {
      const chunk = randomBytes(Math.min(4 * MiB, left));
      hash.update(chunk);
      yield chunk;
    }
  }, createWriteStream(path));
  return hash.digest('hex');
}

/** f0000, f0001, ...: the names curl's glob `f[0000-nnnn]` produces. */
function smallNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `f${String(i).padStart(4, '0')}`);
}

/** `n` files of 4 KiB random bytes each in `dir`. */
export async function makeSmallTree(dir: string, n: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const name of smallNames(n)) await writeFile(join(dir, name), randomBytes(SMALL_FILE_BYTES));
}

/** `actual` holds exactly the files of `expected`, byte for byte. */
export async function verifyTree(expected: string, actual: string, what: string): Promise<void> {
  const want = (await readdir(expected)).sort();
  let got: string[];
  try {
    got = (await readdir(actual)).sort();
  } catch {
    throw new VerifyError(`${what}: ${actual} missing`);
  }
  if (got.join('/') !== want.join('/')) throw new VerifyError(`${what}: ${got.length} files arrived, ${want.length} sent (or other names)`);
  for (const name of want) {
    const [a, b] = await Promise.all([readFile(join(expected, name)), readFile(join(actual, name))]);
    if (!a.equals(b)) throw new VerifyError(`${what}: ${name} differs (${b.length} bytes, ${a.length} sent)`);
  }
}

/** `path` has `size` bytes and the SHA-256 `sha256`. */
export async function verifyFile(path: string, size: number, sha256: string, what: string): Promise<void> {
  let got: number;
  try {
    got = (await stat(path)).size;
  } catch {
    throw new VerifyError(`${what}: ${path} missing`);
  }
  if (got !== size) throw new VerifyError(`${what}: ${got} bytes arrived, ${size} sent`);
  if ((await sha256File(path)) !== sha256) throw new VerifyError(`${what}: SHA-256 differs`);
}

/** Puts a copy of `src` (file or tree) at `dest` on the server's disk, as a source to download. */
export async function place(src: string, dest: string): Promise<void> {
  await cp(src, dest, { recursive: true });
}

/** Files of the names in `src` at `dest` on the server's disk, each with other bytes than its namesake's: what an overwrite replaces. */
export async function placeStale(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  for (const name of await readdir(src)) await writeFile(join(dest, name), Buffer.alloc(SMALL_FILE_BYTES, 0x2e));
}

/** `dir/name` in the client's terms, for remote directories given as '/' or as an absolute path. */
export function remote(dir: string, name: string): string {
  return `${dir.replace(/\/$/, '')}/${name}`;
}
