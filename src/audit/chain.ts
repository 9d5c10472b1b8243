import { createHash } from 'node:crypto';

/** `prev` of the first line ever written. */
export const GENESIS = '0'.repeat(64);

export function lineHash(line: string): string {
  return createHash('sha256').update(line).digest('hex');
}

/** Where the chain stands: the next sequence number and the hash of the last line. */
export interface ChainHead {
  seq: number;
  prev: string;
}

/** Pure: one audit line carrying its sequence number and the hash of the line before it. */
export function chainLine(head: ChainHead, record: Record<string, unknown>): { line: string; head: ChainHead } {
  const line = JSON.stringify({ seq: head.seq, prev: head.prev, ...record });
  return { line, head: { seq: head.seq + 1, prev: lineHash(line) } };
}

export interface ChainBreak {
  /** 1-based line number in the file. */
  line: number;
  reason: string;
}

/**
 * Pure: check a file's lines (without newlines). Returns the first break and
 * the chain head after the last good line. `start` continues a chain from a
 * previous file (rotation); without it the first line is taken as it stands.
 */
export function verifyLines(lines: readonly string[], start?: ChainHead): { break: ChainBreak | null; head: ChainHead | null } {
  let head: ChainHead | null = start ?? null;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] as string;
    let rec: { seq?: unknown; prev?: unknown };
    try {
      rec = JSON.parse(text) as typeof rec;
    } catch {
      const last = i === lines.length - 1;
      return { break: { line: i + 1, reason: last ? 'truncated or malformed last line' : 'not a JSON line (altered)' }, head };
    }
    if (typeof rec.seq !== 'number' || typeof rec.prev !== 'string') {
      return { break: { line: i + 1, reason: 'no sequence number or chain hash (altered)' }, head };
    }
    if (head) {
      if (rec.seq > head.seq) {
        return { break: { line: i + 1, reason: `sequence jumps from ${head.seq - 1} to ${rec.seq}: line(s) removed or reordered` }, head };
      }
      if (rec.seq < head.seq) {
        return { break: { line: i + 1, reason: `sequence goes back to ${rec.seq} after ${head.seq - 1}: line(s) inserted or reordered` }, head };
      }
      if (rec.prev !== head.prev) {
        return { break: { line: i, reason: 'altered: the next line does not chain to it' }, head };
      }
    }
    head = { seq: rec.seq + 1, prev: lineHash(text) };
  }
  return { break: null, head };
}
