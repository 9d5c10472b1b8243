import { createHash } from 'node:crypto';
import { safeJson } from '../session/unsafe-chars.js';

/** `prev` of the first line ever written. */
export const GENESIS = '0'.repeat(64);

/**
 * The longest line of the trail, in bytes without its newline. Records are
 * bounded (a path is at most 4 KiB, some 24 KiB escaped; a transfer's record
 * names at most 16 files at the other end of a copy; a client's text is cut),
 * well under 1 MiB; the writer writes nothing longer (AuditLog), and the
 * readers hold no more of a longer line than this: a 2.5 GB line, corrupted
 * or planted, made `audit verify` take some 5 GB.
 */
export const MAX_RECORD_BYTES = 8 * 1024 * 1024;

/** A line of a log longer than MAX_RECORD_BYTES, as the readers give it: its length only, no record. */
export class LongLine {
  constructor(readonly bytes: number) {}
}

/** Pure: why a line of `bytes` bytes is none of the trail's. */
export function longLineReason(bytes: number): string {
  return `a line of ${bytes} bytes, longer than any audit record (${MAX_RECORD_BYTES} bytes at most): corrupted or altered`;
}

export function lineHash(line: string | Uint8Array): string {
  return createHash('sha256').update(line).digest('hex');
}

/** Where the chain stands: the next sequence number and the hash of the last line. */
export interface ChainHead {
  seq: number;
  prev: string;
}

/**
 * A partial last line left by a crash (the file did not end in a newline),
 * as the restart that found it records it: its length and SHA-256, raw bytes.
 * The fragment stays in the file, outside the chain; the record that names it
 * is chained, so the fragment cannot be altered or removed unseen.
 */
export interface Tear {
  bytes: number;
  sha256: string;
}

export function tearOf(fragment: Uint8Array): Tear {
  return { bytes: fragment.length, sha256: lineHash(fragment) };
}

/**
 * Pure: one audit line carrying its sequence number and the hash of the line
 * before it, first and whatever `record` holds: a record naming its own seq
 * or prev (a worker's message is a record) cannot set them.
 */
export function chainLine(head: ChainHead, record: Record<string, unknown>): { line: string; head: ChainHead } {
  // A literal that starts with seq and prev, then both set again over the record's: V8 builds and
  // stringifies it some twenty times faster than Object.assign onto a copy, and this runs per audit line.
  const chained: Record<string, unknown> = { seq: head.seq, prev: head.prev, ...record };
  chained.seq = head.seq;
  chained.prev = head.prev;
  // A client's text in a record (the name of a failed login, sent before any account) keeps C0 escaped by
  // JSON, but DEL, C1 (CSI drives the terminal of whoever tails the file, NEL ends a line for many readers),
  // U+2028/U+2029 and the bidi controls were written raw (found by a review): \uNNNN escapes, the same value.
  const line = safeJson(chained);
  return { line, head: { seq: head.seq + 1, prev: lineHash(line) } };
}

/**
 * Pure: a file's end split into its last complete chain line and the torn
 * fragment after it (null when the text ends in a newline), with the node
 * that line names (null: none). Unparsable complete lines are passed over;
 * the readers of a file's end (file-end.ts lastLine) hand it only the last
 * complete one, which a restart and retention take as it is.
 */
export function lastLines(text: Buffer): { head: ChainHead | null; fragment: Buffer | null; node: string | null } {
  const end = text.lastIndexOf(0x0a);
  const fragment = end === text.length - 1 ? null : text.subarray(end + 1);
  // Hashed as the bytes stand, as verify hashes them (see ChainCheck.judge).
  for (let stop = end, nl = end; stop >= 0; stop = nl) {
    nl = stop > 0 ? text.lastIndexOf(0x0a, stop - 1) : -1;
    const line = text.subarray(nl + 1, Math.max(stop, nl + 1));
    const rec = parseRecord(line.toString('utf8'));
    if (rec) {
      const node = typeof rec.node === 'string' ? rec.node : null;
      return { head: { seq: rec.seq + 1, prev: lineHash(line) }, fragment, node };
    }
    if (nl < 0) break;
  }
  return { head: null, fragment, node: null };
}

interface ChainRecord {
  seq: number;
  prev: string;
  torn?: unknown;
  /** The writing node's id; absent in lines written before nodes had one. */
  node?: unknown;
  event?: unknown;
  /** audit-deleted: the last sequence number the deleted file held. */
  last_seq?: unknown;
}

/** A line as the chain sees it: a record, or why it is not one. */
function parseLine(text: string): ChainRecord | 'not-json' | 'not-chained' {
  let rec: Partial<ChainRecord> | null;
  try {
    rec = JSON.parse(text) as Partial<ChainRecord> | null;
  } catch {
    return 'not-json';
  }
  // A sequence number a restart can count on from: 1e300 + 1 is 1e300, so a trail whose last line was edited to
  // carry it went on with one number for every record after it (found by a review).
  return rec && Number.isSafeInteger(rec.seq) && (rec.seq as number) >= 0 && typeof rec.prev === 'string' ? (rec as ChainRecord) : 'not-chained';
}

function parseRecord(text: string): ChainRecord | null {
  const rec = parseLine(text);
  return typeof rec === 'string' ? null : rec;
}

function recordedTear(rec: ChainRecord | null): Tear | null {
  const t = rec?.torn as Partial<Tear> | undefined;
  return t && typeof t.bytes === 'number' && typeof t.sha256 === 'string' ? { bytes: t.bytes, sha256: t.sha256 } : null;
}

/**
 * A file whose line endings a copy or an editor turned into CRLF breaks at
 * its first line, as altered: every line's hash takes its carriage return.
 * The reason then says so, since converting back restores the chain.
 */
function withLineEndingHint(reason: string, line: Line | undefined): string {
  if (line === undefined || !textOf(line).endsWith('\r')) return reason;
  return `${reason} (the line ends in a carriage return: the file's line endings were converted to CRLF; convert them back, as dos2unix does, and verify again)`;
}

/** Pure: why `rec` cannot follow `head`, or null when it does. */
function linkBreak(head: ChainHead, rec: ChainRecord): string | null {
  if (rec.seq > head.seq) return `sequence jumps from ${head.seq - 1} to ${rec.seq}: line(s) removed or reordered`;
  if (rec.seq < head.seq) return `sequence goes back to ${rec.seq} after ${head.seq - 1}: line(s) inserted or reordered`;
  if (rec.prev !== head.prev) return 'altered: the next line does not chain to it';
  return null;
}

/**
 * Pure: do `next` (the first lines of the newer file) continue the chain from
 * `end` (the end of the older one)? A tear recorded by the restart, at the end
 * of the older file or as the newer file's first line, is accepted.
 */
export function chainsInto(end: { head: ChainHead | null; fragment: Buffer | null }, next: readonly (Buffer | LongLine)[]): boolean {
  let fragment = end.fragment;
  let target = next[0];
  const second = next[1];
  if (!fragment && target && !(target instanceof LongLine) && second && tornBy(target, textOf(second))) {
    fragment = target;
    target = second;
  }
  const rec = target === undefined ? null : parseRecord(textOf(target));
  if (!rec || !end.head || linkBreak(end.head, rec) !== null) return false;
  const tear = recordedTear(rec);
  if (!fragment) return tear === null;
  return tear !== null && sameTear(tear, fragment);
}

function tornBy(fragment: Uint8Array, record: string): boolean {
  const tear = recordedTear(parseRecord(record));
  return tear !== null && sameTear(tear, fragment);
}

function sameTear(tear: Tear, fragment: Uint8Array): boolean {
  const found = tearOf(fragment);
  return tear.bytes === found.bytes && tear.sha256 === found.sha256;
}

export interface ChainBreak {
  /** 1-based line number in the file; 0: the last line of the previous file (VerifyOptions.start). */
  line: number;
  reason: string;
}

/** A verified tear: the 1-based number of the fragment's line and its length. */
export interface TornLine {
  line: number;
  bytes: number;
}

type Line = string | Buffer | LongLine;
// A long line is no record: its text parses as none.
const textOf = (l: Line) => (typeof l === 'string' ? l : l instanceof LongLine ? '' : l.toString('utf8'));
const bytesOf = (l: string | Buffer) => (typeof l === 'string' ? Buffer.from(l) : l);

/** Pure: does the line parse as a chain record (JSON with its seq and prev)? */
export function isChainRecord(line: Line): boolean {
  return parseRecord(textOf(line)) !== null;
}

/**
 * Pure: may a file whose lines are `after` be the next file of the log whose
 * file held `before`, whatever the files are named (logrotate's dateext,
 * names an operator chose)? Its first record names the node the other's last
 * record names, or, where either names none (a log from before node ids),
 * carries the next sequence number: only those two records count, so a
 * caller may pass just them. A hint for grouping files into one writer's
 * chain, not a proof: ChainCheck checks the chain.
 */
export function nextFileHint(before: readonly Line[], after: readonly Line[]): boolean {
  let last: ChainRecord | null = null;
  for (let i = before.length - 1; i >= 0 && !last; i--) last = parseRecord(textOf(before[i] as Line));
  let first: ChainRecord | null = null;
  for (let i = 0; i < after.length && !first; i++) first = parseRecord(textOf(after[i] as Line));
  if (!last || !first) return false;
  // Two nodes' files never join, however their sequence numbers meet.
  if (typeof last.node === 'string' && typeof first.node === 'string') return last.node === first.node;
  return first.seq === last.seq + 1;
}

/** The first line of a chain as given: where its checking began. */
export interface ChainStart {
  line: number;
  seq: number;
  prev: string;
  event: unknown;
}

export interface VerifyOptions {
  /** Continue the chain from a previous file (rotation); without it the first line is taken as it stands. */
  start?: ChainHead;
  /** The node named by the line `start` was taken from (its `headNode`), vouched for once this file chains to it. */
  startNode?: string | null;
  /** The previous file ended in a torn line this file's first line must record. */
  afterTear?: boolean;
}

/**
 * What checking a file's lines found: the first break, the chain head after
 * the last good line, the torn lines found recorded by the restart after
 * them (`endsTorn`: the last line is one), and the chain's node: `node`, the
 * id of the last line naming one that the next line chains to (null: none,
 * as in files from before node ids), and `headNode`, the last line's, which
 * nothing vouches for yet (the next file's first line may): the line a break
 * names cannot rename the chain it breaks.
 */
export interface FileCheck {
  break: ChainBreak | null;
  head: ChainHead | null;
  torn: TornLine[];
  endsTorn: boolean;
  node: string | null;
  headNode: string | null;
  first: ChainStart | null;
  deleted: number[];
  /** The lines pushed (with a break, up to the line after it). */
  lines: number;
}

/**
 * A file's lines checked as they come (without newlines; Buffers keep a
 * torn fragment's exact bytes): push() each, then end() with the first line
 * of the following file, which may record a tear at this file's end. A line
 * is judged once the one after it is known, so only two are held, whatever
 * the file's size.
 */
export class ChainCheck {
  private head: ChainHead | null;
  private readonly torn: TornLine[] = [];
  // The line before was passed over as a tear: the record that names it must come now.
  private afterTear: boolean;
  private seenAny: boolean;
  // The line `head` was taken from (0: the previous file's last), and its bytes: an alteration is named there.
  private headLine = 0;
  private headRaw: Line | undefined;
  private node: string | null = null;
  // The node named by the line `head` was taken from, not yet vouched for by a next line.
  private headNode: string | null;
  // Without `start`, the first line begins what these lines can vouch for: the caller judges whether the chain may begin there.
  private first: ChainStart | null = null;
  private readonly deleted: number[] = [];
  private broken: ChainBreak | null = null;
  /** The line pushed last, judged when the next one comes. */
  private pending: Line | undefined;
  private count = 0;

  constructor(options: VerifyOptions = {}) {
    this.head = options.start ?? null;
    this.afterTear = options.afterTear ?? false;
    this.seenAny = this.head !== null;
    this.headNode = options.startNode ?? null;
  }

  /** Takes the next line; false once the chain broke (the caller may stop reading). */
  push(line: Line): boolean {
    if (this.broken) return false;
    if (this.pending !== undefined) this.judge(this.pending, line, false);
    this.pending = line;
    this.count++;
    return this.broken === null;
  }

  /** The file ended; `next` is the first line of the file after it, if any. */
  end(next?: Line): FileCheck {
    if (this.pending !== undefined && !this.broken) this.judge(this.pending, next, true);
    this.pending = undefined;
    const { broken, head, torn, afterTear, node, headNode, first, deleted, count } = this;
    return { break: broken, head, torn, endsTorn: afterTear, node, headNode, first, deleted, lines: count };
  }

  private judge(raw: Line, after: Line | undefined, last: boolean): void {
    const at = this.count;
    if (raw instanceof LongLine) {
      // Not a tear either: a crash tears a record, which is shorter.
      this.broken = { line: at, reason: longLineReason(raw.bytes) };
      return;
    }
    const text = textOf(raw);
    if (after !== undefined && tornBy(bytesOf(raw), textOf(after))) {
      // Torn by a crash and recorded by the restart: outside the chain, checked by that record.
      this.torn.push({ line: at, bytes: bytesOf(raw).length });
      this.afterTear = true;
      return;
    }
    const rec = parseLine(text);
    if (rec === 'not-json') {
      this.broken = { line: at, reason: last ? 'truncated or malformed last line' : 'not a JSON line (altered)' };
      return;
    }
    if (rec === 'not-chained') {
      this.broken = { line: at, reason: 'no sequence number or chain hash (altered)' };
      return;
    }
    if (recordedTear(rec) && !this.afterTear && this.seenAny) {
      this.broken = { line: at, reason: 'records a torn line that is not before it (removed or altered)' };
      return;
    }
    this.afterTear = false;
    if (this.head) {
      const reason = linkBreak(this.head, rec);
      if (reason) {
        const altered = reason.startsWith('altered');
        this.broken = { line: altered ? this.headLine : at, reason: withLineEndingHint(reason, altered ? this.headRaw : raw) };
        return;
      }
    }
    if (!this.head) this.first = { line: at, seq: rec.seq, prev: rec.prev, event: rec.event };
    if (rec.event === 'audit-deleted' && typeof rec.last_seq === 'number') this.deleted.push(rec.last_seq);
    this.node = this.headNode ?? this.node;
    // The bytes as they stand: a line not UTF-8 (which the writer never writes) decodes with U+FFFD for each bad
    // byte, so hashing the decoded text let an EF BF BD (U+FFFD itself) be swapped for one 0xFF unseen (found by a review).
    this.head = { seq: rec.seq + 1, prev: lineHash(bytesOf(raw)) };
    this.headLine = at;
    this.headRaw = raw;
    this.headNode = typeof rec.node === 'string' ? rec.node : null;
    this.seenAny = true;
  }
}
