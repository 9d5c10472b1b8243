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
  const date = new Date(Date.UTC(y as number, (mo as number) - 1, d, h, mi, s));
  if (date.getUTCMonth() !== (mo as number) - 1 || (h as number) > 23 || (mi as number) > 59 || (s as number) > 60) {
    return null;
  }
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

/** MLSD/MLST entry: `type=file;size=3;modify=...;perm=...;unique=...;unix.mode=0644; name`. */
export function mlsxLine(info: FileInfo, perms: ReadonlySet<Permission>, name: string = info.name): string {
  const type = info.type === 'dir' ? 'dir' : info.type === 'file' ? 'file' : info.type === 'symlink' ? 'OS.unix=symlink' : 'OS.unix=other';
  const facts = [
    `type=${type}`,
    ...(info.type === 'dir' ? [] : [`size=${info.size}`]),
    `modify=${timeVal(info.mtime)}`,
    `perm=${permFact(info, perms)}`,
    `unique=${info.dev.toString(16)}g${info.ino.toString(16)}`,
    `unix.mode=0${(info.mode & 0o7777).toString(8).padStart(3, '0')}`,
  ];
  return `${facts.join(';')}; ${name}`;
}
