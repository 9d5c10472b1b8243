import { existsSync, realpathSync } from 'node:fs';
import { realpath, statfs } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';

/** Where `path` is on disk, links resolved, whether or not all of it exists yet. */
function realPlace(path: string): string {
  const full = resolve(path);
  if (existsSync(full)) return realpathSync(full);
  const parent = dirname(full);
  return parent === full ? full : join(realPlace(parent), basename(full));
}

/**
 * The kernel's views of processes and devices. A home in /proc/self is the
 * server's memory (/proc/self/mem read and written over SFTP) and its
 * environment; /sys and /dev hold devices and kernel settings. None is a
 * place for a user's files, whatever the admin asked.
 */
const KERNEL_PLACES = ['/proc', '/sys', '/dev'];

/**
 * statfs(2) magic numbers of the kernel's pseudo file systems (linux/magic.h),
 * met wherever they are mounted: a procfs mounted under /srv is as much the
 * server's memory as /proc.
 */
const KERNEL_FILE_SYSTEMS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0xcafe4a11, 'bpf'],
  [0x62656570, 'configfs'],
  [0xde5e81e4, 'efivarfs'],
  [0x6165676c, 'pstore'],
]);

/** The kernel file system `home` (an existing directory) is on, or null for an ordinary one. */
export async function kernelFileSystem(home: string): Promise<string | null> {
  return KERNEL_FILE_SYSTEMS.get((await statfs(home)).type) ?? null;
}

/**
 * One of the server's own files or directories, with what it is when that is
 * not plain from its path: a hook's script directory (hookCodePlaces) is the
 * server's only through the hook, and a refusal naming the directory alone
 * left an operator who had put a hook's script beside the data directory
 * with every default home refused and nothing saying why (found by an
 * operator's walk).
 */
export type ServerFile = string | { readonly path: string; readonly what: string; readonly holdOnly?: true };

/**
 * The server's own files and directories (app.ts serverFilesOf), which no
 * home may be, hold or lie in, except under dataDir/homes where the default
 * homes are; nor may a home lie in the kernel's places (KERNEL_PLACES). A home is a user's whole view of the disk, served with the
 * server's own rights: one holding the server's files would hand out its
 * keys, its database and its config, or let a user replace a hook's script.
 * Compared as real paths, so a link is no way around it; resolved when made
 * (synchronously: at start).
 */
export class ServerPlaces {
  /**
   * `holdOnly`: a home may lie in it, only not be or hold it, nor lie in one
   * of its hidden entries (a directory whose own entries alone count: PATH's,
   * and the service account's home, whose dot-directories programs read).
   */
  private readonly own: { real: string; what: string; holdOnly: boolean }[];
  private readonly data: string;
  private readonly homes: string;

  constructor(dataDir: string, files: readonly ServerFile[]) {
    this.own = files.map((f) =>
      typeof f === 'string' ? { real: realPlace(f), what: '', holdOnly: false } : { real: realPlace(f.path), what: ` (${f.what})`, holdOnly: f.holdOnly ?? false },
    );
    this.data = realPlace(dataDir);
    this.homes = join(this.data, 'homes');
  }

  /** Why the home at real path `home` may not be one; null when it may. */
  conflict(home: string): string | null {
    for (const place of KERNEL_PLACES) {
      if (home === place || home.startsWith(place + sep)) return `would lie in the kernel's ${place}`;
    }
    for (const { real: own, what, holdOnly } of this.own) {
      if (own === home || own.startsWith(home === sep ? sep : home + sep)) return `would hold the server's own ${own}${what}`;
      // Only the data directory has homes in it: a quarantine or trail configured under homes/ is no home.
      const homesHere = own === this.data && home.startsWith(this.homes + sep);
      if (home.startsWith(own + sep) && !homesHere && !holdOnly) return `would lie in the server's own ${own}${what}`;
      // Where a home may lie, only not in a hidden entry: the settings programs read from a home directory
      // (~/.config). The data directory's homes/ excepted: a data directory of ~/.local/share/sluice holds them.
      const hidden = home.startsWith(`${own === sep ? '' : own}${sep}.`) && !home.startsWith(this.homes + sep);
      if (holdOnly && hidden) return `would lie in a hidden directory of the server's own ${own}${what}`;
    }
    return null;
  }
}

/**
 * Why a home at `home` may not be one beside the other users' homes; null
 * when it may (see homeNesting). Two users may share one home, but
 * neither may lie inside the other's: whoever holds the outer home can
 * rename the inner one away and put a link of their own making in its place,
 * and the next login of the inner user then opens wherever that link leads
 * (a review moved a link one directory up, so that its relative text climbed
 * out of the outer home, and the inner user's sessions served a third user's
 * files). The kernel follows links while it resolves a home's path; nothing
 * within a home can be trusted to be what it was.
 */
function nestedHome(home: string, others: readonly { name: string; home: string }[]): string | null {
  for (const other of others) {
    if (home === other.home) continue;
    if (home.startsWith(other.home === sep ? sep : other.home + sep)) return `would lie in user ${other.name}'s home ${other.home}`;
    if (other.home.startsWith(home === sep ? sep : home + sep)) return `would hold user ${other.name}'s home ${other.home}`;
  }
  return null;
}

/**
 * Whether the home `home` would lie in another user's or hold one: compared
 * both where links lead and as written, against the others' homes both ways
 * too. As written matters as much: a home given through a link in another
 * user's home (`/srv/alice/L/bob`, L alice's) is elsewhere for realpath, but
 * its every login resolves alice's L, which she may point anywhere.
 */
export function homeNesting(home: string, realHome: string, others: readonly { name: string; home: string }[], realOf: (path: string) => string): string | null {
  const places = others.flatMap((u) => [{ name: u.name, home: resolve(u.home) }, { name: u.name, home: realOf(u.home) }]);
  return nestedHome(realHome, places) ?? nestedHome(resolve(home), places);
}

/** realPlace, off the event loop: a path that does not resolve is taken as its parent's place and its name. */
export async function realPlaceAsync(path: string): Promise<string> {
  const full = resolve(path);
  const real = await realpath(full).catch(() => null);
  if (real !== null) return real;
  const parent = dirname(full);
  return parent === full ? full : join(await realPlaceAsync(parent), basename(full));
}

/** Lookups realPlacesOf has under way at once. */
const LOOKUPS_AT_ONCE = 16;

/**
 * realPlace of `paths`, each looked up now, once, off the event loop; a path
 * not among them is looked up when asked. For a check that runs inside a
 * transaction holding locks (a store's HomeCheck): the lookups of every
 * stored home, a few system calls each and a network round trip each on
 * shared storage, are made before it begins, not while it holds the locks,
 * which PostgreSQL ends after storeHoldTimeout (found by a review: with some
 * thousands of users on network storage a change of a home failed every
 * time), and not on the event loop, which every session of the process (with
 * workers, the primary every worker asks) shares.
 */
export async function realPlacesOf(paths: Iterable<string>): Promise<(path: string) => string> {
  const known = new Map<string, string>();
  const left = [...new Set(paths)];
  const lookUp = async (): Promise<void> => {
    for (let path = left.pop(); path !== undefined; path = left.pop()) known.set(path, await realPlaceAsync(path));
  };
  await Promise.all(Array.from({ length: LOOKUPS_AT_ONCE }, lookUp));
  return (path) => known.get(path) ?? realPlace(path);
}
