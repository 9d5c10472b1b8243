import { openRegularFile } from '../regular-file.js';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { LongLine, MAX_RECORD_BYTES } from './chain.js';
import { damageOf } from './compressed.js';

/** One file of a log: read through `handle` when it is open (a snapshot's), else opened by `path`. */
export interface LogFileSource {
  readonly path: string;
  readonly gz: boolean;
  readonly handle?: FileHandle | null;
}

/** A reader's bite: few system calls per MiB, and what is held at once stays one chunk and one line (at most MAX_RECORD_BYTES). */
const CHUNK = 1024 * 1024;

/** A line as the readers give it: its bytes, or, longer than any record, its length only. */
export type LogLine = Buffer | LongLine;

/**
 * A log file's lines, as they stream (gunzipped when it is .gz), in batches:
 * raw bytes without the newline, so that a torn fragment is hashed as it was
 * written, and a last line without a newline given as it stands. A line
 * longer than MAX_RECORD_BYTES is given as a LongLine, its length, and not
 * held: memory is one chunk and at most MAX_RECORD_BYTES of a line, whatever
 * the file holds (the readers read whole files once, `readFileSync`, which
 * refused a file over 2 GiB and held every line of a large one at once; then
 * they held the longest line whole, 5 GB for a line of 2.5 GB). A file is
 * read from 0 to its size when the reading begins, so lines the server
 * appends meanwhile wait for the next reader; a handle given stays open. A
 * .gz that does not decompress throws a DamagedFile from the iteration,
 * after the lines that came before it.
 */
export async function* logFileLines(file: LogFileSource): AsyncGenerator<LogLine[]> {
  const handle = file.handle ?? (await openRegularFile(file.path));
  try {
    const raw = chunksOf(handle, (await handle.stat()).size);
    const line = new LineParts();
    try {
      for await (const chunk of file.gz ? gunzipped(raw) : raw) {
        const lines: LogLine[] = [];
        let from = 0;
        for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
          line.add(chunk.subarray(from, nl));
          lines.push(line.take());
          from = nl + 1;
        }
        if (from < chunk.length) line.add(chunk.subarray(from));
        if (lines.length > 0) yield lines;
      }
    } catch (err) {
      throw (file.gz ? damageOf(file.path, err) : null) ?? err;
    }
    if (line.bytes > 0) yield [line.take()];
  } finally {
    if (!file.handle) await handle.close();
  }
}

/**
 * The pieces of one line as they come, in order (prepend: read backwards),
 * held up to MAX_RECORD_BYTES; past that only counted, and taken as a LongLine.
 */
export class LineParts {
  private parts: Buffer[] = [];
  bytes = 0;

  add(piece: Buffer, prepend = false): void {
    this.bytes += piece.length;
    if (this.bytes > MAX_RECORD_BYTES) this.parts = [];
    else if (piece.length > 0) prepend ? this.parts.unshift(piece) : this.parts.push(piece);
  }

  /** The line, and a fresh start for the next. */
  take(): LogLine {
    const line = this.bytes > MAX_RECORD_BYTES ? new LongLine(this.bytes) : this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    this.parts = [];
    this.bytes = 0;
    return line;
  }
}

/**
 * An open file's bytes from 0 to `size`, by position: read again, the same
 * bytes. Not a stream of the handle: Node closes a FileHandle whose stream
 * is destroyed, as a reader that stops early destroys it, autoClose or not.
 */
export async function* chunksOf(handle: FileHandle, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < size; ) {
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK, size - at));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, at);
    if (bytesRead === 0) return; // cut short meanwhile: what there was
    at += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/** `chunks` gunzipped as they come; zlib's errors thrown from the iteration. */
export function gunzipped(chunks: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  const gunzip = createGunzip({ chunkSize: CHUNK });
  // Its failure is the iteration's: the pipeline destroys the gunzip stream with it.
  pipeline(Readable.from(chunks), gunzip).catch(() => undefined);
  return gunzip;
}

/** The first `count` lines of a log file that `accept` takes (fewer if it has fewer), read no further than those. */
export async function firstLinesOf(file: LogFileSource, count: number, accept: (line: LogLine) => boolean = () => true): Promise<LogLine[]> {
  const found: LogLine[] = [];
  for await (const lines of logFileLines(file)) {
    for (const line of lines) if (accept(line) && found.push(line) === count) return found;
  }
  return found;
}
