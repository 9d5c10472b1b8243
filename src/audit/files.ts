import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { isChainRecord, nextFileHint } from './chain.js';
import { DamagedFile } from './compressed.js';
import { lastLineOf } from './file-end.js';
import { firstLinesOf } from './file-lines.js';

export interface RotatedFile {
  name: string;
  n: number;
  gz: boolean;
}

const ROTATED = /^(.+)\.(\d{1,9})(\.gz)?$/;

/** Pure: the rotated siblings of `base` among `names` (`audit.log.3`, `audit.log.3.gz`), oldest (highest N) first. */
export function rotatedSiblings(base: string, names: readonly string[]): RotatedFile[] {
  const found: RotatedFile[] = [];
  for (const name of names) {
    if (!name.startsWith(base + '.')) continue;
    const m = /^(\d{1,9})(\.gz)?$/.exec(name.slice(base.length + 1));
    if (m) found.push({ name, n: Number(m[1]), gz: m[2] !== undefined });
  }
  return found.sort((a, b) => b.n - a.n);
}

/**
 * A log and its rotated siblings by name, oldest first, the live file last.
 * Names move at each rotation: a reader of a log being written opens its
 * files with openLogFiles (snapshot.ts) instead.
 */
export function logFiles(path: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    names = [];
  }
  return [...rotatedSiblings(basename(path), names).map((f) => join(dirname(path), f.name)), path];
}

/** Pure: the live log a file name belongs to: `audit.log.3.gz` -> `audit.log`. */
export function liveName(name: string): string {
  return ROTATED.exec(name)?.[1] ?? name;
}

/**
 * Pure: files grouped into series, one per log (a live file and its rotated
 * siblings in one directory): each series is one writer's chain. Series come
 * in the order of their first file, files within one in the order given.
 * A file whose name is no rotation of a log before it (logrotate's dateext
 * `audit.log-20261203`, or `a1 a2 a3`) continues the series of the file
 * given last in its directory when `follows(before, file)` says so: the
 * order given is the order used, whatever the names.
 */
export function seriesOf(paths: readonly string[], follows: (before: string, file: string) => boolean = () => false): string[][] {
  const by = new Map<string, string[]>();
  // Per directory, the file given last there and its series.
  const last = new Map<string, { path: string; series: string[] }>();
  for (const path of paths) {
    const key = join(dirname(path), liveName(basename(path)));
    const before = last.get(dirname(resolve(path)));
    let series = by.get(key);
    if (series) series.push(path);
    else if (before && follows(before.path, path)) (series = before.series).push(path);
    else by.set(key, (series = [path]));
    if (!by.has(key)) by.set(key, series);
    last.set(dirname(resolve(path)), { path, series });
  }
  return [...new Set(by.values())];
}

/**
 * Files and directories (collected from several nodes) as series, see
 * seriesOf. A file is taken as given, in the order given: named as no
 * rotation of a log before it, it continues the file given last in its
 * directory when its first line carries on that file's node or sequence
 * (nextFileHint), or either of the two is a damaged compressed file (then
 * the order given is all there is to go by). A directory stands for every
 * log in it and below it, each oldest file first, grouped by name; names
 * starting with a dot (editors', rsync's temporary files) and lock files
 * (`audit.log.lock`) are passed over.
 * A file named twice counts once.
 */
export async function collectSeries(args: readonly string[]): Promise<string[][]> {
  const files: string[] = [];
  const given = new Set<string>();
  const seen = new Set<string>();
  const add = (file: string) => {
    const key = resolve(file);
    if (!seen.has(key)) {
      seen.add(key);
      files.push(file);
    }
  };
  for (const arg of args) {
    if (isDirectory(arg)) logsUnder(arg).forEach(add);
    else {
      given.add(arg);
      add(arg);
    }
  }
  // The older file's last record and the newer one's first, each file read only as far as those: a line that
  // is no record (a tear, an altered line) at the join is passed over, as nextFileHint passes over it in whole files.
  const follows = async (before: string, file: string) => {
    try {
      const last = await lastLineOf({ path: before, gz: before.endsWith('.gz') }, isChainRecord);
      const first = await firstLinesOf({ path: file, gz: file.endsWith('.gz') }, 1, isChainRecord);
      return nextFileHint(last === null ? [] : [last], first);
    } catch (err) {
      if (err instanceof DamagedFile) return true;
      // Unreadable: not joined on a guess; reading it for the command says why.
      return false;
    }
  };
  // What seriesOf asks, answered first: whether a file given continues the one given last in its directory,
  // asked only of a file whose name is no rotation of a log before it (seriesOf groups those by name).
  const pairs = new Map<string, boolean>();
  const lastIn = new Map<string, string>();
  const logs = new Set<string>();
  for (const file of files) {
    const before = lastIn.get(dirname(resolve(file)));
    const log = join(dirname(file), liveName(basename(file)));
    if (before !== undefined && given.has(file) && !logs.has(log)) pairs.set(`${before}\0${file}`, await follows(before, file));
    logs.add(log);
    lastIn.set(dirname(resolve(file)), file);
  }
  return seriesOf(files, (before, file) => given.has(file) && pairs.get(`${before}\0${file}`) === true);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // read as a file, which reports why it cannot be
  }
}

/**
 * Every log in `dir` and below, each one's rotated files oldest first then
 * the live one, in name order. A server's lock files (`audit.log.lock`,
 * `serve.lock`: empty, never records) are passed over, as a copy of a data
 * directory or of `audit.log*` brings them along. A directory is read once
 * however many names lead to it (`seen`, by device and inode): a symlink to
 * `.` below a directory given ran into ELOOP, or, with two, overflowed the
 * stack (found by a hostile-input review).
 */
function logsUnder(dir: string, seen = new Set<string>()): string[] {
  const { dev, ino } = statSync(dir);
  if (seen.has(`${dev}:${ino}`)) return [];
  seen.add(`${dev}:${ino}`);
  const names = readdirSync(dir).filter((n) => !n.startsWith('.') && !n.endsWith('.lock')).sort();
  const out: string[] = [];
  const subdirs: string[] = [];
  const files = names.filter((n) => {
    if (!isDirectory(join(dir, n))) return true;
    subdirs.push(n);
    return false;
  });
  for (const live of [...new Set(files.map(liveName))]) {
    out.push(...rotatedSiblings(live, files).map((f) => join(dir, f.name)));
    if (files.includes(live)) out.push(join(dir, live));
  }
  for (const sub of subdirs) out.push(...logsUnder(join(dir, sub), seen));
  return out;
}
