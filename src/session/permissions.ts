import { isWithin } from './paths.js';

export const PERMISSIONS = [
  'list',
  'download',
  'upload',
  'overwrite',
  'delete',
  'rename',
  'mkdir',
  'rmdir',
  'chmod',
  'chtimes',
  'symlink',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const DEFAULT_PERMISSIONS: readonly Permission[] = PERMISSIONS.filter(
  (p) => p !== 'chmod' && p !== 'symlink',
);

/** Permissions at the home (`/`) and overrides for virtual directories, inherited downwards. */
export interface PermissionRules {
  readonly root: ReadonlySet<Permission>;
  readonly dirs: ReadonlyMap<string, ReadonlySet<Permission>>;
}

export function isPermission(word: string): word is Permission {
  return (PERMISSIONS as readonly string[]).includes(word);
}

/**
 * Parse a comma list such as `list,download` or the words `all` / `none`.
 * Throws a message naming the first unknown word.
 */
export function parsePermissions(text: string): Permission[] {
  const words = text.split(',').map((w) => w.trim()).filter((w) => w !== '');
  if (words.length === 1 && words[0] === 'all') return [...PERMISSIONS];
  if (words.length === 1 && words[0] === 'none') return [];
  const out = new Set<Permission>();
  for (const w of words) {
    if (!isPermission(w)) throw new Error(`unknown permission "${w}" (one of: ${PERMISSIONS.join(', ')}, all, none)`);
    out.add(w);
  }
  return [...out];
}

/** Pure: the set in force in `dir` is that of the closest configured ancestor. */
export function permissionsAt(rules: PermissionRules, dir: string): ReadonlySet<Permission> {
  let best = '/';
  let set = rules.root;
  for (const [path, perms] of rules.dirs) {
    if (isWithin(dir, path) && path.length > best.length) {
      best = path;
      set = perms;
    }
  }
  return set;
}

export function allows(rules: PermissionRules, permission: Permission, dir: string): boolean {
  return permissionsAt(rules, dir).has(permission);
}

/**
 * May the user learn which names exist in `dir`? A listing shows them, and
 * download probes them one by one, so either permission reveals them; without
 * both, every answer about a name there must be the same whatever exists.
 */
export function seesNames(rules: PermissionRules, dir: string): boolean {
  const set = permissionsAt(rules, dir);
  return set.has('list') || set.has('download');
}

/**
 * Is `path` a directory the administrator configured rights for, or an
 * ancestor of one? Overrides are keyed by name: moving or removing such a
 * directory would carry its contents out from under the rights meant for them
 * (or bring others' contents under them). Their names are no secret either:
 * the administrator gave them to the user.
 */
export function carriesOverride(rules: PermissionRules, path: string): boolean {
  for (const dir of rules.dirs.keys()) if (isWithin(dir, path)) return true;
  return false;
}

/**
 * Does moving or linking a file from directory `from` to directory `to` keep
 * the user's rights on it within those it had? Every right in force at `to`
 * must be in force at `from`, so nothing can be read, changed or exposed
 * through a second place that could not be where it was.
 */
export function narrows(rules: PermissionRules, from: string, to: string): boolean {
  const had = permissionsAt(rules, from);
  for (const p of permissionsAt(rules, to)) if (!had.has(p)) return false;
  return true;
}

/**
 * Pure: does `after` take away, anywhere, a permission `before` gave? The
 * sets are constant between override directories, so a look at the home and
 * at each directory either names covers every path.
 */
export function takesAnyAway(before: PermissionRules, after: PermissionRules): boolean {
  const dirs = new Set(['/', ...before.dirs.keys(), ...after.dirs.keys()]);
  for (const dir of dirs) {
    const now = permissionsAt(after, dir);
    for (const p of permissionsAt(before, dir)) if (!now.has(p)) return true;
  }
  return false;
}

/**
 * Pure: are the two rule sets the same, overrides included? One that only
 * adds an override giving what its directory inherits is not: an override
 * also keeps its directory in place and bounds the moves in and out of it.
 */
export function sameRules(a: PermissionRules, b: PermissionRules): boolean {
  const same = (x: ReadonlySet<Permission>, y: ReadonlySet<Permission> | undefined) => y !== undefined && x.size === y.size && [...x].every((p) => y.has(p));
  return same(a.root, b.root) && a.dirs.size === b.dirs.size && [...a.dirs].every(([dir, ps]) => same(ps, b.dirs.get(dir)));
}

/** The rules as plain lists, to travel (a live session's, between processes) and back by rulesOfList. */
export interface PermissionList {
  readonly root: readonly Permission[];
  readonly dirs: readonly (readonly [string, readonly Permission[]])[];
}

export function listOfRules(rules: PermissionRules): PermissionList {
  return { root: [...rules.root], dirs: [...rules.dirs].map(([dir, set]) => [dir, [...set]] as const) };
}

/**
 * Rules built from lists share their parts, which nothing may change (the
 * types say so): there are at most 2^11 sets of permissions, and most users
 * have no override. Each login and each session held a Set and a Map of its
 * own, the same as every other's (found by heap snapshots of idle SFTP
 * sessions). The sets list their permissions in PERMISSIONS' order.
 */
export function rulesOfList(list: PermissionList): PermissionRules {
  return { root: sharedSet(list.root), dirs: list.dirs.length === 0 ? NO_OVERRIDES : new Map(list.dirs.map(([dir, ps]) => [dir, sharedSet(ps)])) };
}

const NO_OVERRIDES: ReadonlyMap<string, ReadonlySet<Permission>> = new Map();
/** By the permissions' bits, in PERMISSIONS' order. */
const SETS = new Map<number, ReadonlySet<Permission>>();

function sharedSet(permissions: readonly Permission[]): ReadonlySet<Permission> {
  const bits = permissions.reduce((b, p) => b | (1 << PERMISSIONS.indexOf(p)), 0);
  let set = SETS.get(bits);
  if (!set) SETS.set(bits, (set = new Set(PERMISSIONS.filter((_, i) => bits & (1 << i)))));
  return set;
}
