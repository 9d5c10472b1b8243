import { promises as fsp, type Stats } from 'node:fs';
import { openRegularFile } from '../regular-file.js';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { rotatedSiblings } from './files.js';

/** One file of a log, opened: read it through `handle`, never again by its name, which a rotation moves. */
export interface OpenedLogFile {
  /** Its name when it was opened: its place in the order, and how it is reported. */
  readonly path: string;
  readonly gz: boolean;
  /** null: the live file did not exist (not yet written, or moved by logrotate and not yet started again). */
  readonly handle: FileHandle | null;
}

/** A log's files as they stood at one instant, each open; close() once read. */
export interface LogSnapshot {
  /** Oldest first, the live file last. */
  readonly files: readonly OpenedLogFile[];
  /** Closes every file; again, does nothing more. */
  close(): Promise<void>;
}

/** Rotations that may come between the opens and the check before giving up: each needs rotateSize bytes of records. */
const TRIES = 5;

/**
 * `path` (a live log) and its rotated siblings, every one opened before any
 * is read, and shown to be one consistent set. Listing the names and opening
 * each later by name, as the API and the CLI did, reads whatever the name
 * holds by then: a rotation meanwhile (every audit.log.N moves up one, the
 * live file becomes audit.log.1) made a reader skip a whole file, or read
 * one twice, and answer as if complete (found by a review). Here, once every
 * file is open, the directory is listed again and each name stat'ed: the
 * same names, each still the file (dev, ino) that was opened, means no
 * rotation or deletion came between the first listing and the last open,
 * so the open files are the log as it stood then, each exactly once. A
 * rotation after that moves names, not the open files, and its records come
 * after the snapshot. Otherwise everything is closed and tried again.
 */
export async function openLogFiles(path: string): Promise<LogSnapshot> {
  for (let attempt = 1; ; attempt++) {
    const opened: (OpenedLogFile & { id: string | null })[] = [];
    const closeAll = () => Promise.all(opened.map((f) => f.handle?.close())).then(() => undefined);
    try {
      for (const file of await listed(path)) {
        const handle = await openRegularFile(file.path).catch((err: NodeJS.ErrnoException) => absent(err, file.path));
        // Pushed before its stat, so that a stat that fails leaves it for closeAll.
        const entry: OpenedLogFile & { id: string | null } = { ...file, handle, id: null };
        opened.push(entry);
        if (handle) entry.id = identity(await handle.stat());
      }
      const again = await listed(path);
      const ids = await Promise.all(again.map((file) => fsp.stat(file.path).then(identity, absent)));
      const same = again.length === opened.length && again.every((file, i) => file.path === opened[i]?.path && ids[i] === opened[i]?.id);
      if (same) {
        const files = opened.map(({ path, gz, handle }) => ({ path, gz, handle }));
        let closing: Promise<void> | null = null;
        return { files, close: () => (closing ??= closeAll()) };
      }
    } catch (err) {
      await closeAll();
      throw err;
    }
    await closeAll();
    if (attempt === TRIES) throw new Error(`${path}: the log rotated ${TRIES} times while its files were opened; try again`);
  }
}

/** The names of the log's files now, oldest first; the live file always last (it may not exist). */
async function listed(path: string): Promise<{ path: string; gz: boolean }[]> {
  const names = await fsp.readdir(dirname(path)).catch(() => [] as string[]);
  const rotated = rotatedSiblings(basename(path), names).map((f) => ({ path: join(dirname(path), f.name), gz: f.gz }));
  return [...rotated, { path, gz: false }];
}

function identity(stats: Stats): string {
  return `${stats.dev}:${stats.ino}`;
}

/**
 * ENOENT: null. Anything else names the file: a directory in the trail's
 * place answered `sluice audit query` with "sluice: a directory, not a
 * regular file" and the API's 500 with a server log saying no more.
 */
function absent(err: NodeJS.ErrnoException, path?: string): null {
  if (err.code === 'ENOENT') return null;
  if (path === undefined) throw err;
  throw new Error(`cannot read ${path}: ${err.code ?? err.message}`, { cause: err });
}
