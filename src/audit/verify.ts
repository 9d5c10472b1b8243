import { verifyLines, type ChainBreak, type ChainHead } from './chain.js';

/** A file's lines as raw bytes (a torn fragment's are hashed as written), without the newlines. */
export type ReadLines = (file: string) => Buffer[];

/** One series (a log and its rotated files, oldest first) checked as one chain. */
export interface SeriesResult {
  files: readonly string[];
  /** The node id of its last line that names one; null when none does (files from before node ids). */
  node: string | null;
  lines: number;
  /** `FILE:LINE (N bytes)` of each line torn by a crash and recorded at restart. */
  torn: string[];
  /** The first break; the lines after it are not checked. */
  break: (ChainBreak & { file: string }) | null;
}

/**
 * The files of one writer, in order: the chain continues from each file into
 * the next. Each file is checked knowing the next one's first line, which may
 * record a tear at this one's end.
 */
export function verifySeries(files: readonly string[], read: ReadLines): SeriesResult {
  const result: SeriesResult = { files, node: null, lines: 0, torn: [], break: null };
  let start: ChainHead | undefined;
  // The file `start` came from and its number of lines: a break at line 0 is that file's last chain line.
  let startAt = { file: '', lines: 0 };
  let startNode: string | null = null;
  let afterTear = false;
  let lines = files.length > 0 ? read(files[0] as string) : [];
  for (let i = 0; i < files.length; i++) {
    const file = files[i] as string;
    const following = i + 1 < files.length ? read(files[i + 1] as string) : [];
    const checked = verifyLines(lines, { start, startNode, afterTear, next: following[0] });
    result.node = checked.node ?? result.node;
    if (checked.break) {
      const { line, reason } = checked.break;
      result.break = line === 0 ? { file: startAt.file, line: startAt.lines, reason } : { file, line, reason };
      return result;
    }
    startNode = checked.headNode;
    result.torn.push(...checked.torn.map((t) => `${file}:${t.line} (${t.bytes} bytes)`));
    if (checked.head && checked.head !== start) startAt = { file, lines: lines.length - (checked.endsTorn ? 1 : 0) };
    start = checked.head ?? start;
    afterTear = checked.endsTorn;
    result.lines += lines.length;
    lines = following;
  }
  // Unbroken to its end: the last line's node names the chain (nothing after it could vouch for it).
  result.node = startNode ?? result.node;
  return result;
}

/** Pure: how a series is named in the report: by its node, or by its newest file when it names none. */
export function seriesLabel(r: SeriesResult): string {
  return r.node !== null ? `node ${r.node}` : `${r.files.at(-1) ?? '(no file)'} (no node id)`;
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
    const label = seriesLabel(r);
    if (r.break) {
      lines.push(`${label}: ${r.break.file}:${r.break.line}: ${r.break.reason}`);
      failed.push(label);
      continue;
    }
    const torn = r.torn.length === 0 ? '' : `; torn by a crash and recorded at restart: ${r.torn.join(', ')}`;
    lines.push(`${label}: ok: ${r.lines} lines, chain intact${torn}`);
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
  return { ok: failed.length === 0, lines };
}
