import { promises as fsp } from 'node:fs';
import { openRegularFile } from '../regular-file.js';
import { basename, dirname, join } from 'node:path';
import { chainsInto, lastLines } from './chain.js';
import { rotatedSiblings } from './files.js';
import { fileEnd } from './file-end.js';
import { firstLinesOf, type LogLine } from './file-lines.js';

/** audit.keep: how many rotated files, and how old, the server keeps; 0 in either: no limit by it. */
export interface KeepPolicy {
  count: number;
  days: number;
}

export interface Rotated {
  name: string;
  mtimeMs: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Pure: the rotated files (given oldest first) beyond the policy, oldest
 * first, each with the reason. Position counts, not the number in the name,
 * so a gap left by hand does not keep more files than asked.
 */
export function beyondKeep(rotated: readonly Rotated[], keep: KeepPolicy, now: number): { name: string; reason: 'count' | 'age' }[] {
  const out: { name: string; reason: 'count' | 'age' }[] = [];
  rotated.forEach((f, i) => {
    const newerOnes = rotated.length - 1 - i;
    if (keep.count > 0 && newerOnes >= keep.count) out.push({ name: f.name, reason: 'count' });
    else if (keep.days > 0 && now - f.mtimeMs > keep.days * DAY_MS) out.push({ name: f.name, reason: 'age' });
  });
  return out;
}

/** What retention did to one file, for the audit trail. */
export type KeepOutcome =
  | { event: 'audit-deleted'; file: string; reason: 'count' | 'age'; last_seq: number }
  /** A rotated xferlog file deleted: it has no chain, so nothing to check first. */
  | { event: 'xferlog-deleted'; file: string; reason: 'count' | 'age' }
  | { event: 'audit-keep-refused'; file: string; reason: string };

/** The rotated files of `path`, oldest first, with what retention needs of each. */
async function listRotated(path: string): Promise<(Rotated & { dev: number; ino: number })[]> {
  const dir = dirname(path);
  return Promise.all(
    rotatedSiblings(basename(path), await fsp.readdir(dir)).map(async (f) => {
      const { mtimeMs, dev, ino } = await fsp.stat(join(dir, f.name));
      return { name: f.name, mtimeMs, dev, ino };
    }),
  );
}

/** Does `file` still lead to the file `id` was taken from? */
async function still(file: string, id: { dev: number; ino: number }): Promise<boolean> {
  const now = await fsp.stat(file).catch(() => null);
  return now !== null && now.dev === id.dev && now.ino === id.ino;
}

const MOVED = 'it was moved or replaced while it was checked';

/**
 * Delete the rotated files of `path` beyond `keep`, oldest first, each only
 * once its last line is seen to chain into the first line of the file after
 * it: then the newer file alone still proves where the chain stood, and a
 * file that was altered or lost its successor is kept for an operator to
 * look at. Stops at the first file it may not delete, so no gap opens behind
 * a kept file. `report` gets each outcome (for the audit trail). Run it
 * where the files are not renamed meanwhile (LogFile.exclusive); a file
 * whose name leads elsewhere by the time it would be deleted is kept.
 */
export async function applyKeep(path: string, keep: KeepPolicy, now: number, report: (o: KeepOutcome) => void): Promise<void> {
  const dir = dirname(path);
  const rotated = await listRotated(path);
  for (const { name, reason } of beyondKeep(rotated, keep, now)) {
    const i = rotated.findIndex((f) => f.name === name);
    const newer = rotated[i + 1]?.name ?? basename(path);
    // A file whose end cannot be read (a .gz cut short, more after its last line than any record) is kept, and that
    // is recorded: it stopped retention with a line in the server log only (found by a review).
    const read = await endOf(join(dir, name)).catch((err: Error) => err);
    if (read instanceof Error) {
      report({ event: 'audit-keep-refused', file: name, reason: `its end cannot be read: ${read.message}` });
      return;
    }
    const { end, id } = read;
    if (!end.head || !chainsInto(end, await firstLines(join(dir, newer)))) {
      report({ event: 'audit-keep-refused', file: name, reason: `its last line does not chain into ${newer}` });
      return;
    }
    // Deleted only if the name still leads to the file checked (the caller keeps sluice's own rotation out; logrotate may not).
    if (!(await still(join(dir, name), id))) {
      report({ event: 'audit-keep-refused', file: name, reason: MOVED });
      return;
    }
    if (!(await deleted(join(dir, name), name, report))) return;
    report({ event: 'audit-deleted', file: name, reason, last_seq: end.head.seq - 1 });
  }
}

/**
 * The same for a log with no chain (the xferlog): the rotated files of
 * `path` beyond `keep` are deleted, oldest first, each one recorded; one
 * whose name leads elsewhere by then is kept, and retention stops there.
 */
export async function applyKeepUnchained(path: string, keep: KeepPolicy, now: number, report: (o: KeepOutcome) => void): Promise<void> {
  const dir = dirname(path);
  const rotated = await listRotated(path);
  for (const { name, reason } of beyondKeep(rotated, keep, now)) {
    const listed = rotated.find((f) => f.name === name);
    if (!listed || !(await still(join(dir, name), listed))) {
      report({ event: 'audit-keep-refused', file: name, reason: MOVED });
      return;
    }
    if (!(await deleted(join(dir, name), name, report))) return;
    report({ event: 'xferlog-deleted', file: name, reason });
  }
}

/** Delete `file`; when it cannot be, that is recorded as a refusal (retention stops there) and false returned. */
async function deleted(file: string, name: string, report: (o: KeepOutcome) => void): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (err) {
    report({ event: 'audit-keep-refused', file: name, reason: `it could not be deleted: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
    return false;
  }
}

/** A log's last complete line and what follows (gunzipped when it is .gz), however long, and which file it was read from. */
async function endOf(file: string): Promise<{ end: ReturnType<typeof lastLines>; id: { dev: number; ino: number } }> {
  const fh = await openRegularFile(file);
  try {
    const { dev, ino } = await fh.stat();
    return { end: lastLines(await fileEnd(fh, file)), id: { dev, ino } };
  } finally {
    await fh.close();
  }
}

/** A log's first two lines (fewer if it has fewer), however long, gunzipped when it is .gz; none when it cannot be read. */
function firstLines(file: string): Promise<LogLine[]> {
  return firstLinesOf({ path: file, gz: file.endsWith('.gz') }, 2).catch(() => []);
}
