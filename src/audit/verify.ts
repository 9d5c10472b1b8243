import { ChainCheck, GENESIS, type ChainHead, type ChainStart } from './chain.js';
import { DamagedFile } from './compressed.js';
import type { LogLine } from './file-lines.js';
import { shown } from '../session/unsafe-chars.js';

/**
 * A file's lines as they stream, in batches: raw bytes (a torn fragment's
 * are hashed as written), without the newlines, a line longer than any
 * record as a LongLine; a DamagedFile thrown from
 * the iteration for a compressed file that does not decompress.
 */
export type ReadLines = (file: string) => AsyncIterable<LogLine[]>;

/** One series (a log and its rotated files, oldest first) checked as one chain. */
export interface SeriesResult {
  files: readonly string[];
  /** The node id of its last line that names one; null when none does (files from before node ids). */
  node: string | null;
  lines: number;
  /** `FILE:LINE (N bytes)` of each line torn by a crash and recorded at restart. */
  torn: string[];
  /** The first break (line null: the file as a whole, a DamagedFile); the lines after it are not checked. */
  break: { file: string; line: number | null; reason: string } | null;
  /**
   * After a damaged file, the files that follow it, checked as a chain of
   * their own: what is lost is that file's lines, not the trust in the rest.
   */
  after: SeriesResult | null;
  /** The sequence number the series starts at: 0, or after files retention deleted (or, with fromRotation, others pruned). */
  from: number;
}

export interface SeriesOptions {
  /**
   * Accept a series whose older files are gone without a record of it
   * (pruned by logrotate, archived elsewhere), if it starts at a rotation;
   * otherwise a chain that does not start at 0 must start just after files
   * the trail itself recorded deleting.
   */
  fromRotation?: boolean;
}

/**
 * The files of one writer, in order: the chain continues from each file into
 * the next. Each file is checked as it streams, knowing the next one's first
 * line, which may record a tear at this one's end.
 */
export async function verifySeries(files: readonly string[], read: ReadLines, options: SeriesOptions = {}): Promise<SeriesResult> {
  const result: SeriesResult = { files, node: null, lines: 0, torn: [], break: null, after: null, from: 0 };
  let first: (ChainStart & { file: string }) | null = null;
  const deleted = new Set<number>();
  let start: ChainHead | undefined;
  // The file `start` came from and its number of lines: a break at line 0 is that file's last chain line.
  let startAt = { file: '', lines: 0 };
  let startNode: string | null = null;
  let afterTear = false;
  for (let i = 0; i < files.length; i++) {
    const file = files[i] as string;
    const check = new ChainCheck({ start, startNode, afterTear });
    const damage = await fed(check, read(file), file.endsWith('.gz'));
    if (damage) {
      // A start missing before it is the first break, and names where (found by a review: the damage hid it).
      const missing = first && startMissing(first, deleted, options);
      if (first && missing) {
        result.break = { file: first.file, line: first.line, reason: missing };
        result.from = first.seq;
        return result;
      }
      result.break = { file, line: null, reason: damage.reason };
      // The next file's first line chains to lines nobody can read: its chain starts at that rotation.
      result.after = i + 1 < files.length ? await verifySeries(files.slice(i + 1), read, { fromRotation: true }) : null;
      result.node ??= result.after?.node ?? null;
      return result;
    }
    const checked = check.end(i + 1 < files.length ? await firstLine(read(files[i + 1] as string)) : undefined);
    result.node = checked.node ?? result.node;
    if (checked.break) {
      const { line, reason } = checked.break;
      result.break = line === 0 ? { file: startAt.file, line: startAt.lines, reason } : { file, line, reason };
      return result;
    }
    if (!first && checked.first) first = { ...checked.first, file };
    for (const seq of checked.deleted) deleted.add(seq);
    startNode = checked.headNode;
    for (const t of checked.torn) result.torn.push(`${file}:${t.line} (${t.bytes} bytes)`);
    if (checked.head && checked.head !== start) startAt = { file, lines: checked.lines - (checked.endsTorn ? 1 : 0) };
    start = checked.head ?? start;
    afterTear = checked.endsTorn;
    result.lines += checked.lines;
    if (i === files.length - 1 && checked.lines === 0) {
      // Every file of the trail begins with a record (audit-start, audit-rotated), written within a second
      // of its opening: the newest without one was emptied (found by an operator's walk: `: > audit.log`
      // verified as intact), unless its server is opening it at this moment (the first line is written at once).
      result.break = { file, line: null, reason: 'no records: every start and every new file writes one first (audit-start, audit-rotated), so this file was emptied, unless its server is opening it at this moment' };
      return result;
    }
  }
  // Unbroken to its end: the last line's node names the chain (nothing after it could vouch for it).
  result.node = startNode ?? result.node;
  if (first) {
    const missing = startMissing(first, deleted, options);
    if (missing) result.break = { file: first.file, line: first.line, reason: missing };
    result.from = first.seq;
  }
  return result;
}

/**
 * Feeds `check` a file's lines until they end or the chain breaks; the
 * DamagedFile that stopped them, if one did. A compressed file is read to
 * its end even after a break: damage shows only there (the gzip check), and
 * a file that does not decompress is reported as that, whatever bytes its
 * damage made of the lines before.
 */
async function fed(check: ChainCheck, lines: AsyncIterable<LogLine[]>, gz: boolean): Promise<DamagedFile | null> {
  try {
    let taking = true;
    for await (const batch of lines) {
      for (let i = 0; taking && i < batch.length; i++) taking = check.push(batch[i] as LogLine);
      if (!taking && !gz) break;
    }
    return null;
  } catch (err) {
    if (err instanceof DamagedFile) return err;
    throw err;
  }
}

/** A file's first line; undefined when it has none, or does not decompress (its own turn reports that). */
async function firstLine(lines: AsyncIterable<LogLine[]>): Promise<LogLine | undefined> {
  try {
    for await (const batch of lines) if (batch.length > 0) return batch[0];
    return undefined;
  } catch (err) {
    if (err instanceof DamagedFile) return undefined;
    throw err;
  }
}

/**
 * Why the chain may not begin with `first`, or null when it may. Lines cut
 * from the start leave a chain that is intact from there on: only its start
 * tells. It is the first line ever written (seq 0 after GENESIS), or the
 * rotation after the last file retention deleted (an audit-deleted record
 * in the chain names its last seq), or, when the operator says older files
 * were pruned outside sluice, a rotation.
 */
function startMissing(first: ChainStart, deleted: ReadonlySet<number>, options: SeriesOptions): string | null {
  if (first.seq === 0) return first.prev === GENESIS ? null : 'the first line (seq 0) does not follow the start of a chain (altered)';
  const rotation = first.event === 'audit-rotated';
  if (rotation && deleted.has(first.seq - 1)) return null;
  if (rotation && options.fromRotation) return null;
  const pruned = rotation ? '; if older files were pruned outside sluice, verify with --from-rotation' : '';
  return `the chain's start is missing: it begins at seq ${first.seq}, and no audit-deleted record names seq ${first.seq - 1} (lines or files removed from the start)${pruned}`;
}

/** Pure: how a series is named in the report: by its node, or by its newest file when it names none. */
export function seriesLabel(r: SeriesResult): string {
  return r.node !== null ? `node ${r.node}` : `${r.files.at(-1) ?? '(no file)'} (no node id)`;
}

/** Pure: `ok: ...` or `FILE:LINE: why`; a damaged file `FILE: why`, then how the files after it stand. */
function stateOf(r: SeriesResult): string {
  if (r.break) {
    const { file, line, reason } = r.break;
    const at = line === null ? `${file}: ${reason}` : `${file}:${line}: ${reason}`;
    return r.after ? `${at}; after it: ${stateOf(r.after)}` : at;
  }
  const torn = r.torn.length === 0 ? '' : `; torn by a crash and recorded at restart: ${r.torn.join(', ')}`;
  const from = r.from === 0 ? '' : ` from seq ${r.from}`;
  return `ok: ${r.lines} lines${from}, chain intact${torn}`;
}

/**
 * Pure: the report of `sluice audit verify`, one line per chain, each node's
 * apart: a break in one does not hide the others. A node id found in two
 * series is a failure too: one id must have one writer (one chain), else its
 * records cannot be told apart (two nodes configured alike, or the same
 * node's files collected twice).
 */
export function verdict(results: readonly SeriesResult[]): { ok: boolean; lines: string[] } {
  const lines: string[] = [];
  const failed: string[] = [];
  for (const r of results) {
    lines.push(`${seriesLabel(r)}: ${stateOf(r)}`);
    if (r.break) failed.push(seriesLabel(r));
  }
  const byNode = new Map<string, SeriesResult[]>();
  for (const r of results) if (r.node !== null) byNode.set(r.node, [...(byNode.get(r.node) ?? []), r]);
  for (const [node, series] of byNode) {
    if (series.length < 2) continue;
    const where = series.map((r) => r.files.at(-1)).join(', ');
    lines.push(`node ${node}: ${series.length} separate chains (${where}): two nodes with one nodeId, or one node's files given twice`);
    failed.push(`node ${node}`);
  }
  if (results.length > 1) {
    lines.push(failed.length === 0 ? `ok: ${results.length} chains, each intact` : `broken: ${[...new Set(failed)].join(', ')}`);
  }
  // Node ids and file names are the trails' own text: one node's trail named `vm2\r\x1b[1A\x1b[2K` painted over
  // the line above it on a terminal, another node's break (found by a review). Shown escaped, as the query's table is.
  return { ok: failed.length === 0, lines: lines.map(shown) };
}
