import { closeSync, constants, fstatSync, openSync, promises as fsp, readFileSync, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/**
 * The server's own files (its config, keys and certificate, its logs) are
 * regular files. A FIFO in the place of one held its reader in the open, or
 * in the read, for ever: `sluice --config fifo` never answered, and a FIFO
 * as the TLS key stopped the start and, read at every /readyz, took a thread
 * of libuv's pool each time until none was left. Opened without waiting and
 * refused unless regular, they fail at once, saying what is there. Nor does
 * the open take a tty for the server's terminal (O_NOCTTY): the server, a
 * session leader without one (systemd's service, a `setsid` start), made a
 * tty put in a certificate's place its controlling terminal at the SIGHUP
 * that reloads it, as the storage's opens of client names once did. Only a
 * read needs it: the kernel gives no terminal to an open for writing alone.
 */

/** `st` when it is a regular file; else throws, saying what it is. */
export function regularFile(st: Stats, name?: string): Stats {
  if (st.isFile()) return st;
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a device';
  throw new Error(`${name === undefined ? '' : `${name} is `}${kind}, not a regular file`);
}

const READ_NOW = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * A regular file opened to read (see above), for a reader that reads it by
 * parts; its open's errors as fs gives them (ENOENT, EACCES). `sluice audit
 * verify` of a FIFO never answered.
 */
export async function openRegularFile(path: string): Promise<FileHandle> {
  const handle = await fsp.open(path, READ_NOW);
  try {
    // Unnamed: its callers' messages name the file.
    regularFile(await handle.stat());
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** A regular file's bytes (see above); its open's errors as fs gives them (ENOENT, EACCES). */
export async function readRegularFile(path: string): Promise<Buffer> {
  const handle = await fsp.open(path, READ_NOW);
  try {
    regularFile(await handle.stat(), path);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** A file larger than its reader takes: refused before a byte of it is read. */
export class FileTooLarge extends Error {
  constructor(path: string, readonly size: number, readonly limit: number) {
    super(`${path} is ${size} bytes, more than ${limit}`);
    this.name = 'FileTooLarge';
  }
}

/** The same, synchronously: for the CLI's start, before anything else runs. Larger than `maxBytes`, a FileTooLarge. */
export function readRegularFileSync(path: string, maxBytes = Infinity): Buffer {
  const fd = openSync(path, READ_NOW);
  try {
    const { size } = regularFile(fstatSync(fd), path);
    if (size > maxBytes) throw new FileTooLarge(path, size, maxBytes);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}
