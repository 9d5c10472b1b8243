import { SluiceError, pathTooLong } from './errors.js';
import { strayInvisible } from './look-alikes.js';
import { hasUnsafeChar } from './unsafe-chars.js';

/** Longest single name and whole path we accept, in UTF-8 bytes (Linux NAME_MAX, PATH_MAX). */
export const MAX_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 4096;
/** Prefix of in-progress atomic uploads; hidden from listings and never addressable by clients. */
export const UPLOAD_TEMP_PREFIX = '.sluice-upload-';

/**
 * U+FFFD, what every front-end's UTF-8 decoding (SFTP and SCP names, FTP
 * command lines) puts for bytes that are no UTF-8: `caf\xe9` and `caf\xe8`
 * (two Latin-1 names) both arrive as `caf\uFFFD`. Taken as a name, one
 * client's upload replaced a file of another name and a delete removed it
 * (found by a review). A path holding it is refused, as an unsafe character
 * is; so is the rare name that really is U+FFFD, the price of never taking
 * one name for another.
 */
const NOT_DECODED = '\uFFFD';

/**
 * Pure: turn the session's cwd and a client path into a clean absolute virtual
 * path. Backslashes are separators (Windows clients send them), `.` and `//`
 * vanish, and `..` stops at the virtual root, as it does under chroot(2).
 * Everything is decided here, before any permission check or disk access.
 * A path longer than `maxBytes` (the storage's Storage.maxPathBytes) is refused.
 */
export function resolveVirtual(cwd: string, input: string, maxBytes = MAX_PATH_BYTES): string {
  if (hasUnsafeChar(input)) throw new SluiceError('invalid-path', 'Invalid character in path');
  if (input.includes(NOT_DECODED)) throw new SluiceError('invalid-path', 'Path is not UTF-8');
  const parts = input.startsWith('/') || input.startsWith('\\') ? [] : splitVirtual(cwd);
  for (const seg of input.split(/[/\\]/)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      parts.pop();
      continue;
    }
    checkName(seg);
    parts.push(seg);
  }
  const result = '/' + parts.join('/');
  if (Buffer.byteLength(result) > Math.min(maxBytes, MAX_PATH_BYTES)) throw pathTooLong();
  return result;
}

/**
 * Pure: does the client path name a directory? It does when it ends in a
 * separator, `.` or `..`, as POSIX reads `f/`, `f/.` and `f/..`: the final
 * name must then be a directory. stat("f/") of a file is ENOTDIR, where
 * OpenSSH's sftp-server and vsftpd hand the path to the kernel, and
 * open("new/", O_CREAT) makes no file `new`. resolveVirtual drops that ending
 * with the empty and `.` names, so it is read here, from the client's text:
 * `RETR f/` downloaded f, `STOR new/` made a file new, and `DELE f/` removed f.
 * The empty path, the working directory, is one too.
 */
export function namesDirectory(input: string): boolean {
  return /(^|[/\\])\.{0,2}$/.test(input);
}

/**
 * The form Storage.resolve takes of a clean virtual path `path`: with a final
 * `/` where the client named a directory (namesDirectory).
 */
export function lookupPath(path: string, directory: boolean): string {
  return directory && path !== '/' ? path + '/' : path;
}

/**
 * One name as a client gives it: resolveVirtual checks every component with
 * it, and operations that create a name check the final one. Refusing the
 * characters of unsafe-chars.ts (C0, DEL, C1, U+2028/U+2029, bidi controls
 * and marks, invisible characters) is what keeps every name made through
 * sluice whole, and told apart from its look-alikes, in line-based output:
 * LIST/NLST lines, and MLSD/MLST entries, `facts SP name CRLF` (RFC 3659
 * 7.2), where only CR or LF can end a name early (`;`, `=` and spaces are
 * fine after the first space); the xferlog and other logs, whose readers
 * also end lines at NEL or U+2028; and shown names, which a bidi override
 * would reorder and a zero width space make a look-alike of another, as
 * would a joiner, variation selector or tag out of place (look-alikes.ts).
 * Names made on the host with such characters are not listed (listing.ts
 * DirectoryListing).
 */
export function checkName(name: string): void {
  const refused = nameRefusal(name);
  if (refused) throw refused;
}

/**
 * Pure: may a client give `name`? A name on the disk that none may give was
 * made on the host, and is not listed (listing.ts): given back by a client,
 * it would not name that entry. A backslash separates, so a listed `x\y`
 * read, replaced or removed `x/y` instead, and a directory named `a\..` was
 * the directory holding it again to `scp -r`, whose walk of two such never
 * ended (found by a review).
 */
export function isClientName(name: string): boolean {
  return nameRefusal(name) === null;
}

/** Why checkName refuses `name`, or null. */
function nameRefusal(name: string): SluiceError | null {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\')) return new SluiceError('invalid-path');
  if (hasUnsafeChar(name) || strayInvisible(name) !== null) return new SluiceError('invalid-path', 'Invalid character in path');
  if (name.includes(NOT_DECODED)) return new SluiceError('invalid-path', 'Path is not UTF-8');
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return new SluiceError('invalid-path', 'File name too long');
  if (name.startsWith(UPLOAD_TEMP_PREFIX)) return new SluiceError('invalid-path', 'Reserved file name');
  return null;
}

/** Components of an already clean virtual path. */
export function splitVirtual(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

export function parentOf(path: string): string {
  const parts = splitVirtual(path);
  parts.pop();
  return '/' + parts.join('/');
}

export function baseName(path: string): string {
  return splitVirtual(path).pop() ?? '';
}

/** Relative link text that leads from the directory `fromDir` to `to`, both virtual. */
export function relativeVirtual(fromDir: string, to: string): string {
  const from = splitVirtual(fromDir);
  const target = splitVirtual(to);
  let common = 0;
  while (common < from.length && common < target.length && from[common] === target[common]) common++;
  const up = from.slice(common).map(() => '..');
  const rel = [...up, ...target.slice(common)].join('/');
  return rel === '' ? '.' : rel;
}

/** Is `path` the directory `dir` or below it? Both virtual and clean. */
export function isWithin(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(dir + '/');
}

/** Do two clean virtual paths overlap: the same path, or one of them below the other? */
export function overlaps(a: string, b: string): boolean {
  return isWithin(a, b) || isWithin(b, a);
}

/** Like resolveVirtual, but a `..` that would climb above the home is an error, not a no-op. */
export function resolveStrict(cwd: string, input: string, maxBytes = MAX_PATH_BYTES): string {
  const depth = (p: string) => p.split(/[/\\]/).filter((s) => s !== '' && s !== '.');
  const start = input.startsWith('/') || input.startsWith('\\') ? 0 : depth(cwd).length;
  let level = start;
  for (const seg of depth(input)) {
    level += seg === '..' ? -1 : 1;
    if (level < 0) throw new SluiceError('permission-denied', 'Permission denied', 'link target outside the home');
  }
  return resolveVirtual(cwd, input, maxBytes);
}

/**
 * Pure: what the user may see of a symlink. `text` is the link's text with an
 * absolute target already made a virtual path, or null when that target lies
 * outside the home (then nothing is shown). Relative text is shown as stored,
 * unless its `..` climbs above the home (then it throws): the rest would name
 * what lies outside. Throws, as resolveVirtual does, on text that is no clean path,
 * and on a name in it that no client may give (isClientName): the link leads
 * to that name, which a client given the text back names otherwise (`x\y` as
 * `x/y`; found by a review).
 */
export function visibleLinkTarget(linkDir: string, text: string | null): string | null {
  if (text === null) return null;
  // The kernel, and the storage's walk, part link text at slashes only.
  if (!text.split('/').every((name) => name === '' || name === '.' || name === '..' || isClientName(name))) {
    throw new SluiceError('invalid-path', undefined, 'link text names what no client may give');
  }
  if (text.startsWith('/')) return resolveStrict('/', text);
  resolveStrict(linkDir, text);
  return text;
}
