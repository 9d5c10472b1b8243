import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ensureWritableDir } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { holdsNothing } from '../store/sqlite/db.js';

/**
 * What a command made on its way to the store (the data directory, its
 * homes/, a new SQLite database), for undoing when the command fails: a
 * failed command leaves the file system as it found it. Found by a review:
 * run in an empty directory, `store nodes` without PostgreSQL, `user show
 * nobody` or `ban remove` of an address not banned failed and left data/ (a
 * new database in it) and certs/ behind.
 */
export interface StorePlaces {
  /** The SQLite database this command makes, none being there; null when one is, or the store is PostgreSQL. */
  readonly fresh: string | null;
  /** Remove what was made, once the store is closed; what is no longer as it was made (a directory that holds something) stays. */
  undo(): void;
}

/** Make the data directory (0700, checked usable, as serve makes it) and note what was there before. */
export function prepareStorePlaces(config: Config, sqliteFile: (dataDir: string) => string): StorePlaces {
  const dataDir = resolve(config.dataDir);
  const homes = join(dataDir, 'homes');
  const file = config.store === '' ? sqliteFile(dataDir) : null;
  const fresh = file !== null && !existsSync(file) ? file : null;
  const homesThere = existsSync(homes);
  const firstMade = ensureWritableDir('dataDir', dataDir);
  return {
    fresh,
    undo: () => {
      // A server that started here meanwhile took serve.lock before it opened the database: then the database is its;
      // another command may have written to it meanwhile too. (One writing at the very moment it is removed is not seen.)
      if (fresh !== null && !existsSync(join(dataDir, 'serve.lock')) && holdsNothing(fresh)) {
        for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(fresh + suffix, { force: true });
      }
      const made = [
        ...(homesThere ? [] : [homes]),
        ...(firstMade === undefined ? [] : madeChain(resolve(firstMade), dataDir)),
      ];
      for (const dir of made) {
        try {
          rmdirSync(dir);
        } catch {
          // Not empty, or gone: it is no longer only what this command made.
          return;
        }
      }
    },
  };
}

/** `dir` and its parents up to `first`, deepest first: what mkdir -p made. */
function madeChain(first: string, dir: string): string[] {
  const chain: string[] = [];
  for (let d = dir; !relative(first, d).startsWith('..'); d = dirname(d)) {
    chain.push(d);
    if (d === first) break;
  }
  return chain;
}
