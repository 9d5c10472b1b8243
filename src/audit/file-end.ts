import { openRegularFile } from '../regular-file.js';
import type { FileHandle } from 'node:fs/promises';
import { damageOf } from './compressed.js';
import { MAX_RECORD_BYTES } from './chain.js';
import { LineParts, chunksOf, gunzipped, logFileLines, type LogFileSource, type LogLine } from './file-lines.js';

/*
 * A log's end, from its last complete line on: where a restart continues the
 * chain, what retention checks before it deletes a file, and what tells
 * whether one file carries on another.
 */

/** Bytes read at a time, backwards, when looking for a log's last line. */
const END_CHUNK = 64 * 1024;

/**
 * A log's end that no writer of the trail made: its last complete line, or
 * what follows it (a tear is part of a record), is longer than any record
 * (MAX_RECORD_BYTES), and is not read on.
 */
export class LongEnd extends Error {
  constructor(file: string, what: 'line' | 'fragment', over: number) {
    super(
      what === 'line'
        ? `${file}: its last complete line is over ${over} bytes, longer than any audit record (${MAX_RECORD_BYTES} bytes at most): corrupted or altered`
        : `${file}: the ${over} bytes or more after its last newline are longer than any audit record (${MAX_RECORD_BYTES} bytes at most), so no crash tore them from one: corrupted or altered`,
    );
    this.name = 'LongEnd';
  }
}

/**
 * Pure steps of reading the end of a file of `size` bytes backwards: yields
 * each `[position, length]` to read and is handed those bytes; returns the
 * file from the start of its last complete line on (that line, its newline
 * and any torn fragment after it), or the whole file when it holds at most
 * one newline. It reads back as far as that line begins, however long up to
 * MAX_RECORD_BYTES: a reader that gave up after a fixed window would take the
 * middle of a long line for the end of the chain. A line or a fragment longer
 * throws a LongEnd. Memory: that line, the fragment, one chunk.
 */
function* fromLastLine(size: number, file: string): Generator<[number, number], Buffer, Buffer> {
  const parts: Buffer[] = [];
  let newlines = 0;
  // Bytes read back since the last newline found (the fragment's, then the line's).
  let since = 0;
  for (let pos = size; pos > 0; ) {
    const length = Math.min(END_CHUNK, pos);
    pos -= length;
    const chunk = yield [pos, length];
    parts.unshift(chunk);
    let i = chunk.length;
    for (; i > 0; ) {
      const nl = chunk.lastIndexOf(0x0a, i - 1);
      if (nl < 0) break;
      if (since + (i - nl - 1) > MAX_RECORD_BYTES) throw new LongEnd(file, newlines === 0 ? 'fragment' : 'line', MAX_RECORD_BYTES);
      since = 0;
      // The first newline found ends the last complete line, the second is just before it.
      if (++newlines === 2) {
        parts[0] = chunk.subarray(nl + 1);
        return Buffer.concat(parts);
      }
      i = nl;
    }
    since += i;
    if (since > MAX_RECORD_BYTES) throw new LongEnd(file, newlines === 0 ? 'fragment' : 'line', MAX_RECORD_BYTES);
  }
  return Buffer.concat(parts);
}

function fullRead(file: string, position: number, length: number, read: number): void {
  if (read !== length) throw new Error(`${file}: changed while read (${read} of ${length} bytes at ${position})`);
}

/** The end of an open file from its last complete line on, see fromLastLine. */
export async function lastLine(fh: FileHandle, file: string): Promise<Buffer> {
  const steps = fromLastLine((await fh.stat()).size, file);
  for (let step = steps.next(); ; ) {
    if (step.done) return step.value;
    const [position, length] = step.value;
    const buf = Buffer.alloc(length);
    fullRead(file, position, length, (await fh.read(buf, 0, length, position)).bytesRead);
    step = steps.next(buf);
  }
}

/**
 * The same for bytes that can only be read forwards (a gzipped log): fed the
 * stream, keeps its last complete line and what follows, each up to
 * MAX_RECORD_BYTES; `text` throws a LongEnd when either is longer.
 */
export class LastLine {
  /** The last complete line, its newline included. */
  private line: Buffer[] = [];
  private lineLong = false;
  /** What came after that newline. */
  private rest: Buffer[] = [];
  private restBytes = 0;

  constructor(private readonly file = 'the log') {}

  push(chunk: Buffer): void {
    const last = chunk.lastIndexOf(0x0a);
    if (last < 0) {
      this.addRest(chunk);
      return;
    }
    const before = last > 0 ? chunk.lastIndexOf(0x0a, last - 1) : -1;
    if (before >= 0) {
      this.line = [chunk.subarray(before + 1, last + 1)];
      this.lineLong = last - before - 1 > MAX_RECORD_BYTES;
    } else {
      this.lineLong = this.restBytes + last > MAX_RECORD_BYTES;
      this.line = this.lineLong ? [] : [...this.rest, chunk.subarray(0, last + 1)];
    }
    this.rest = [];
    this.restBytes = 0;
    if (last + 1 < chunk.length) this.addRest(chunk.subarray(last + 1));
  }

  private addRest(piece: Buffer): void {
    this.restBytes += piece.length;
    if (this.restBytes > MAX_RECORD_BYTES) this.rest = [];
    else this.rest.push(piece);
  }

  get text(): Buffer {
    if (this.lineLong) throw new LongEnd(this.file, 'line', MAX_RECORD_BYTES);
    if (this.restBytes > MAX_RECORD_BYTES) throw new LongEnd(this.file, 'fragment', MAX_RECORD_BYTES);
    return Buffer.concat([...this.line, ...this.rest]);
  }
}

/**
 * A log file's end from its last complete line on, however long (see
 * lastLine): read back from the end, or, gzipped, streamed through. A .gz
 * that does not decompress throws a DamagedFile.
 */
export async function fileEnd(fh: FileHandle, file: string): Promise<Buffer> {
  if (!file.endsWith('.gz')) return lastLine(fh, file);
  const end = new LastLine(file);
  try {
    for await (const chunk of gunzipped(chunksOf(fh, (await fh.stat()).size))) end.push(chunk as Buffer);
  } catch (err) {
    throw damageOf(file, err) ?? err;
  }
  return end.text;
}

/**
 * The lines of an open plain file from its last to its first, raw bytes
 * without the newline, as logFileLines gives them (a last line without a
 * newline included, nothing after a final newline; a line longer than any
 * record as a LongLine). Each byte is read once; memory is one chunk and at
 * most MAX_RECORD_BYTES of a line.
 */
export async function* linesFromEnd(fh: FileHandle, file: string): AsyncGenerator<LogLine> {
  // The line being read back: its beginning lies before what is read so far.
  const line = new LineParts();
  let last = true;
  for (let pos = (await fh.stat()).size; pos > 0; ) {
    const length = Math.min(END_CHUNK, pos);
    pos -= length;
    const chunk = Buffer.alloc(length);
    fullRead(file, pos, length, (await fh.read(chunk, 0, length, pos)).bytesRead);
    let end = chunk.length;
    for (let nl = chunk.lastIndexOf(0x0a); nl >= 0; nl = end > 0 ? chunk.lastIndexOf(0x0a, end - 1) : -1) {
      line.add(chunk.subarray(nl + 1, end), true);
      const empty = line.bytes === 0;
      const taken = line.take();
      if (!last || !empty) yield taken;
      last = false;
      end = nl;
    }
    if (end > 0) line.add(chunk.subarray(0, end), true);
  }
  if (!last || line.bytes > 0) yield line.take();
}

/**
 * The last line of a log file that `accept` takes (null: none): a plain
 * file read back from its end only as far as that line, a gzipped one
 * streamed through.
 */
export async function lastLineOf(file: LogFileSource, accept: (line: LogLine) => boolean): Promise<LogLine | null> {
  if (file.gz) {
    let found: LogLine | null = null;
    for await (const lines of logFileLines(file)) {
      for (let i = lines.length - 1; i >= 0; i--) {
        if (accept(lines[i] as LogLine)) {
          found = lines[i] as LogLine;
          break;
        }
      }
    }
    return found;
  }
  const fh = file.handle ?? (await openRegularFile(file.path));
  try {
    for await (const line of linesFromEnd(fh, file.path)) if (accept(line)) return line;
    return null;
  } finally {
    if (!file.handle) await fh.close();
  }
}
