import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface RotatedFile {
  name: string;
  n: number;
  gz: boolean;
}

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

/** For the CLI: a log and its rotated siblings, oldest first, the live file last. */
export function logFiles(path: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    names = [];
  }
  return [...rotatedSiblings(basename(path), names).map((f) => join(dirname(path), f.name)), path];
}
