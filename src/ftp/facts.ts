import type { FileInfo } from '../session/file-info.js';
import type { Permission } from '../session/permissions.js';

/** RFC 3659 time-val: YYYYMMDDHHMMSS in UTC. */
export function timeVal(date: Date): string {
  return date.toISOString().replace(/[-T:]/g, '').slice(0, 14);
}

/** Parse an RFC 3659 time-val (fraction allowed); null when malformed. */
export function parseTimeVal(text: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d{1,3})?$/.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  // Date.UTC reads the years 0 to 99 as 1900 to 1999: the date is set on its own, checked, then the time
  // (a leap second, :60, then rolls over into the next minute, and its day with it).
  const date = new Date(0);
  date.setUTCFullYear(y as number, (mo as number) - 1, d);
  if (date.getUTCMonth() !== (mo as number) - 1 || (h as number) > 23 || (mi as number) > 59 || (s as number) > 60) {
    return null;
  }
  date.setUTCHours(h as number, mi as number, s as number, 0);
  return date;
}

/** The `perm` fact from the permissions in force in the entry's directory (for dirs: inside it). */
export function permFact(info: FileInfo, perms: ReadonlySet<Permission>): string {
  const has = (p: Permission) => perms.has(p);
  if (info.type === 'dir') {
    return (has('upload') ? 'c' : '') + (has('rmdir') ? 'd' : '') + 'e' + (has('rename') ? 'f' : '') +
      (has('list') ? 'l' : '') + (has('mkdir') ? 'm' : '') + (has('delete') ? 'p' : '');
  }
  return (has('upload') ? 'a' : '') + (has('delete') ? 'd' : '') + (has('rename') ? 'f' : '') +
    (has('download') ? 'r' : '') + (has('overwrite') ? 'w' : '');
}

/** The facts this server knows, in the order it emits them (RFC 3659 7.5, 7.8). */
const FACTS = ['type', 'size', 'modify', 'perm', 'unique', 'unix.mode'] as const;
export type Fact = (typeof FACTS)[number];

/** What a new connection emits: every fact. */
export const ALL_FACTS: ReadonlySet<Fact> = new Set(FACTS);

/**
 * `OPTS MLST fact1;fact2;` (RFC 3659 7.9): the facts asked for that this
 * server knows; names are case-insensitive, unknown ones ignored, and an
 * empty list selects none.
 */
export function selectFacts(list: string): Set<Fact> {
  const asked = new Set(list.split(';').map((f) => f.trim().toLowerCase()));
  return new Set(FACTS.filter((f) => asked.has(f)));
}

/** `type;size;`: the facts in emission order, each followed by `;`, selected ones marked `*` when `mark` is set. */
export function factList(selected: ReadonlySet<Fact>, mark: boolean): string {
  return FACTS.filter((f) => mark || selected.has(f))
    .map((f) => (mark && selected.has(f) ? `${f}*;` : `${f};`))
    .join('');
}

function factValue(fact: Fact, info: FileInfo, perms: ReadonlySet<Permission>): string | null {
  switch (fact) {
    case 'type':
      return info.type === 'dir' ? 'dir' : info.type === 'file' ? 'file' : info.type === 'symlink' ? 'OS.unix=symlink' : 'OS.unix=other';
    case 'size':
      return info.type === 'dir' ? null : String(info.size);
    case 'modify':
      return timeVal(info.mtime);
    case 'perm':
      return permFact(info, perms);
    case 'unique':
      return `${info.dev.toString(16)}g${info.ino.toString(16)}`;
    case 'unix.mode':
      return `0${(info.mode & 0o7777).toString(8).padStart(3, '0')}`;
    default: {
      const never: never = fact;
      return never;
    }
  }
}

/**
 * MLSD/MLST entry: `type=file;size=3;modify=...;perm=...;unique=...;unix.mode=0644; name`,
 * only the selected facts; with none, ` name` (RFC 3659 7.2: the facts are optional, the space is not).
 */
export function mlsxLine(info: FileInfo, perms: ReadonlySet<Permission>, selected: ReadonlySet<Fact>, name: string = info.name): string {
  let facts = '';
  for (const fact of FACTS) {
    if (!selected.has(fact)) continue;
    const value = factValue(fact, info, perms);
    if (value !== null) facts += `${fact}=${value};`;
  }
  return `${facts} ${name}`;
}
