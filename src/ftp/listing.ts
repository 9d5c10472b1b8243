import type { FileInfo } from '../session/file-info.js';
import type { Permission } from '../session/permissions.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const SIX_MONTHS_MS = 182 * 24 * 3600 * 1000;

/** A name that would break a line-oriented listing (and could forge replies) is not listed. */
export function listable(name: string): boolean {
  return !/[\r\n]/.test(name);
}

function typeChar(info: FileInfo): string {
  switch (info.type) {
    case 'dir':
      return 'd';
    case 'symlink':
      return 'l';
    case 'file':
      return '-';
    default:
      return '?';
  }
}

export function modeString(info: FileInfo): string {
  const m = info.mode;
  const bit = (mask: number, ch: string) => (m & mask ? ch : '-');
  const exec = (x: number, special: number, on: string, off: string) =>
    m & special ? (m & x ? on : off) : m & x ? 'x' : '-';
  return (
    typeChar(info) +
    bit(0o400, 'r') + bit(0o200, 'w') + exec(0o100, 0o4000, 's', 'S') +
    bit(0o040, 'r') + bit(0o020, 'w') + exec(0o010, 0o2000, 's', 'S') +
    bit(0o004, 'r') + bit(0o002, 'w') + exec(0o001, 0o1000, 't', 'T')
  );
}

/** `Nov 24 21:10` within six months, `Nov 24  2025` otherwise, as ls does (UTC). */
export function lsDate(date: Date, now: Date): string {
  const month = MONTHS[date.getUTCMonth()] as string;
  const day = String(date.getUTCDate()).padStart(2, ' ');
  const recent = Math.abs(now.getTime() - date.getTime()) < SIX_MONTHS_MS;
  const tail = recent
    ? `${String(date.getUTCHours()).padStart(2, '0')}:${String(date.getUTCMinutes()).padStart(2, '0')}`
    : ` ${date.getUTCFullYear()}`;
  return `${month} ${day} ${tail}`;
}

/**
 * One `ls -l` line as FileZilla, WinSCP and lftp parse it. Owner and group
 * are fixed words: server uids are nobody's business.
 */
export function listLine(info: FileInfo, now: Date): string {
  return [
    modeString(info),
    String(info.nlink).padStart(4, ' '),
    'ftp'.padEnd(8, ' '),
    'ftp'.padEnd(8, ' '),
    String(info.size).padStart(12, ' '),
    lsDate(info.mtime, now),
    info.name,
  ].join(' ');
}

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
