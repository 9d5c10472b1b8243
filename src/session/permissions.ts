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
