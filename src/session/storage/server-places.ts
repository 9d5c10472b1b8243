import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';

/** Where `path` is on disk, links resolved, whether or not all of it exists yet. */
export function realPlace(path: string): string {
  const full = resolve(path);
  if (existsSync(full)) return realpathSync(full);
  const parent = dirname(full);
  return parent === full ? full : join(realPlace(parent), basename(full));
}

/**
 * The server's own files and directories (app.ts serverFilesOf), which no
 * home may be, hold or lie in, except under dataDir/homes where the default
 * homes are. A home is a user's whole view of the disk, served with the
 * server's own rights: one holding the server's files would hand out its
 * keys, its database and its config, or let a user replace a hook's script.
 * Compared as real paths, so a link is no way around it; resolved when made
 * (synchronously: at start, or once per administrative change).
 */
export class ServerPlaces {
  private readonly own: string[];
  private readonly data: string;
  private readonly homes: string;

  constructor(dataDir: string, files: readonly string[]) {
    this.own = files.map(realPlace);
    this.data = realPlace(dataDir);
    this.homes = join(this.data, 'homes');
  }

  /** Why the home at real path `home` may not be one; null when it may. */
  conflict(home: string): string | null {
    for (const own of this.own) {
      if (own === home || own.startsWith(home === sep ? sep : home + sep)) return `would hold the server's own ${own}`;
      // Only the data directory has homes in it: a quarantine or trail configured under homes/ is no home.
      const homesHere = own === this.data && home.startsWith(this.homes + sep);
      if (home.startsWith(own + sep) && !homesHere) return `would lie in the server's own ${own}`;
    }
    return null;
  }
}
