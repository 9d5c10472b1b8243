import { openRegularFile } from '../regular-file.js';
import type { FileHandle } from 'node:fs/promises';
import { damageOf } from './compressed.js';
import { chunksOf, gunzipped, logFileLines, type LogFileSource } from './file-lines.js';

/*
 * A log's end, from its last complete line on: where a restart continues the
 * chain, what retention checks before it deletes a file, and what tells
 * whether one file carries on another.
 */

/** Bytes read at a time, backwards, when looking for a log's last line. */
const END_CHUNK = 64 * 1024;

/**
 * Pure steps of reading the end of a file of `size` bytes backwards: yields
 * each `[position, length]` to read and is handed those bytes; returns the
 * file from the start of its last complete line on (that line, its newline
 * and any torn fragment after it), or the whole file when it holds at most
 * one newline. It reads back as far as that line begins, however long: a
 * reader that gave up after a fixed window would take the middle of a long
 * line for the end of the chain. Memory: that line, the fragment, one chunk.
 */
function* fromLastLine(size: number): Generator<[number, number], Buffer, Buffer> {
  const parts: Buffer[] = [];
  let newlines = 0;
  for (let pos = size; pos > 0; ) {
    const length = Math.min(END_CHUNK, pos);
    pos -= length;
    const chunk = yield [pos, length];
    parts.unshift(chunk);
    for (let i = chunk.length; i > 0; ) {
      const nl = chunk.lastIndexOf(0x0a, i - 1);
      if (nl < 0) break;
      // The first newline found ends the last complete line, the second is just before it.
      if (++newlines === 2) {
        parts[0] = chunk.subarray(nl + 1);
        return Buffer.concat(parts);
      }
      i = nl;
    }
  }
  return Buffer.concat(parts);
}

function fullRead(file: string, position: number, length: number, read: number): void {
  if (read !== length) throw new Error(`${file}: changed while read (${read} of ${length} bytes at ${position})`);
}

/** The end of an open file from its last complete line on, see fromLastLine. */
export async function lastLine(fh: FileHandle, file: string): Promise<Buffer> {
  const steps = fromLastLine((await fh.stat()).size);
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
 * stream, keeps its last complete line and what follows, however long.
 */
export class LastLine {
  /** The last complete line, its newline included. */
  private line: Buffer[] = [];
  /** What came after that newline. */
  private rest: Buffer[] = [];

  push(chunk: Buffer): void {
    const last = chunk.lastIndexOf(0x0a);
    if (last < 0) {
      this.rest.push(chunk);
      return;
    }
    const before = last > 0 ? chunk.lastIndexOf(0x0a, last - 1) : -1;
    this.line = before >= 0 ? [chunk.subarray(before + 1, last + 1)] : [...this.rest, chunk.subarray(0, last + 1)];
    this.rest = last + 1 < chunk.length ? [chunk.subarray(last + 1)] : [];
  }

  get text(): Buffer {
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
  const end = new LastLine();
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
 * newline included, nothing after a final newline). Each byte is read once;
 * memory is one chunk and the longest line.
 */
export async function* linesFromEnd(fh: FileHandle, file: string): AsyncGenerator<Buffer> {
  // The start of the line being read back: its beginning lies before what is read so far.
  let carry: Buffer[] = [];
  let last = true;
  for (let pos = (await fh.stat()).size; pos > 0; ) {
    const length = Math.min(END_CHUNK, pos);
    pos -= length;
    const chunk = Buffer.alloc(length);
    fullRead(file, pos, length, (await fh.read(chunk, 0, length, pos)).bytesRead);
    let end = chunk.length;
    for (let nl = chunk.lastIndexOf(0x0a); nl >= 0; nl = end > 0 ? chunk.lastIndexOf(0x0a, end - 1) : -1) {
      const line = carry.length === 0 ? chunk.subarray(nl + 1, end) : Buffer.concat([chunk.subarray(nl + 1, end), ...carry]);
      carry = [];
      if (!last || line.length > 0) yield line;
      last = false;
      end = nl;
    }
    if (end > 0) carry.unshift(chunk.subarray(0, end));
  }
  if (!last || carry.length > 0) yield Buffer.concat(carry);
}

/**
 * The last line of a log file that `accept` takes (null: none): a plain
 * file read back from its end only as far as that line, a gzipped one
 * streamed through.
 */
export async function lastLineOf(file: LogFileSource, accept: (line: Buffer) => boolean): Promise<Buffer | null> {
  if (file.gz) {
    let found: Buffer | null = null;
    for await (const lines of logFileLines(file)) {
      for (let i = lines.length - 1; i >= 0; i--) {
        if (accept(lines[i] as Buffer)) {
          found = lines[i] as Buffer;
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
