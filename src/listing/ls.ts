import type { FileInfo } from '../session/file-info.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const SIX_MONTHS_MS = 182 * 24 * 3600 * 1000;

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

export interface ListLineOptions {
  /** Follow a symlink's name with ` -> target` as `ls -l` does, where the session layer gave a target. */
  linkTarget?: boolean;
}

/**
 * One `ls -l` line as FileZilla, WinSCP and lftp parse it. Owner and group
 * are fixed words: server uids are nobody's business.
 */
export function listLine(info: FileInfo, now: Date, options: ListLineOptions = {}): string {
  const name = options.linkTarget && info.type === 'symlink' && info.target !== undefined ? `${info.name} -> ${info.target}` : info.name;
  return [
    modeString(info),
    String(info.nlink).padStart(4, ' '),
    'ftp'.padEnd(8, ' '),
    'ftp'.padEnd(8, ' '),
    String(info.size).padStart(12, ' '),
    lsDate(info.mtime, now),
    name,
  ].join(' ');
}
