import { ByteQueue } from '../wire/byte-queue.js';

/** Longest command line we accept, in bytes, CRLF included. */
export const MAX_LINE = 4096;

export type LineEvent = { line: string } | { tooLong: true };

const IAC = 0xff;
/** The lowest Telnet command byte (SE): below it, the byte after an IAC is text. */
const FIRST_COMMAND = 240;
const CR = 0x0d;
const LF = 0x0a;
const SB = 250;
const SE = FIRST_COMMAND;
/** Telnet Interrupt Process and Data Mark: the Synch a client sends before an urgent ABOR is IAC IP IAC DM. */
const IP = 244;
const DM = 242;
const WILL = 251;
const DONT = 254;

/**
 * Bounded reader of the control channel: bytes in, whole lines out, one at
 * a time. Lines may arrive split over many chunks or many in one; Telnet
 * IAC sequences are removed (IAC IAC is a literal 0xFF); a line longer than
 * MAX_LINE is dropped up to its end and reported once. Chunks are kept as
 * they came until their lines are asked for, so a chunk of thousands of
 * pipelined commands costs its own bytes, not an object per line.
 */
export class LineReader {
  /** The line so far (a client may send it a byte per segment). */
  private readonly buf = new ByteQueue();
  private discarding = false;
  /** The last line ended at a CR (an ABOR): an LF right after it belongs to that line. */
  private dropLf = false;
  /**
   * Bytes read through toward the line in progress: its text so far, and what `buf` does not hold (Telnet
   * commands, the bytes of a line too long to keep). See midLine.
   */
  private lineBytes = 0;
  /**
   * Telnet state carried between chunks: 0 none, 1 after IAC, 2 option byte due, 3 in subnegotiation, 4 IAC in
   * subnegotiation, 5 right after IAC IP (a Synch's DM may follow without its IAC).
   */
  private telnet = 0;
  /** Chunks fed and not yet read through; the first from `offset`. */
  private readonly unread: Buffer[] = [];
  private offset = 0;
  private unreadSize = 0;

  feed(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.unread.push(chunk);
    this.unreadSize += chunk.length;
  }

  /** The next whole line of what was fed; null when none is complete yet. */
  next(): LineEvent | null {
    for (let chunk = this.unread[0]; chunk; chunk = this.unread[0]) {
      let start = this.offset;
      const flushText = (end: number) => {
        if (end > start && !this.discarding) this.append(chunk.subarray(start, end));
      };
      for (let i = this.offset; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (this.dropLf) {
          this.dropLf = false;
          if (b === LF) {
            start = i + 1;
            // Read through with the next bytes, it is the ABOR's, not the next line's.
            this.lineBytes -= 1;
            continue;
          }
        }
        if (this.telnet === 5) {
          this.telnet = 0;
          if (b === DM) {
            // The Synch's DM whose IAC was the urgent byte, taken out of the stream by the kernel: BSD's ftp
            // (Debian's tnftp, inetutils-ftp) sends IAC IP, then IAC urgent, then DM ABOR. Read as text, the
            // DM made the line `\xf2ABOR`: 500, and the download went on; the client drains the data
            // connection before it reads the replies, so it read all of a 1 GB file, then both sides waited.
            flushText(i);
            start = i + 1;
            continue;
          }
        }
        if (this.telnet === 1 && b < FIRST_COMMAND) {
          // An IAC with no command after it: the Telnet Synch before an ABOR (IAC IP IAC DM) sends its
          // DM as urgent data, which the kernel takes out of the stream, and the ABOR's A was taken for
          // the command (lftp's ABOR came as BOR, 500, its transfer never aborted). The byte is text.
          this.telnet = 0;
        } else if (this.telnet !== 0 || b === IAC) {
          flushText(i);
          start = i + 1;
          const literal = this.stepTelnet(b);
          if (literal !== null && !this.discarding) this.append(Buffer.from([literal]));
          continue;
        }
        if (b === LF) {
          flushText(i);
          this.consume(i + 1);
          return this.takeLine();
        }
        if (b === CR && !this.discarding && this.lastReceived(i) && this.isAbort(chunk.subarray(start, i))) {
          // ABOR ends at its CR: a client that sends it urgent (Python's ftplib: `ABOR\r\n` with MSG_OOB)
          // has its last byte, the LF, taken out of the stream by the kernel, and the line waited for an
          // LF that never came (the client timed out, and its upload was stored whole when it closed the
          // data connection). An LF right after it is dropped. Only at the last byte received: such a
          // client sends nothing more before the ABOR's reply. Found by a review: `ABOR\rMKD x\r\n`, one
          // line to whatever reads lines by their LF (a command-filtering proxy, an IDS), ran MKD.
          flushText(i);
          this.consume(i + 1);
          this.dropLf = true;
          return this.takeLine();
        }
        if (!this.discarding && this.buf.size + (i - start) >= MAX_LINE) {
          this.discarding = true;
          this.buf.clear();
        }
      }
      flushText(chunk.length);
      this.consume(chunk.length);
    }
    return null;
  }

  /** The byte at `i` of the first unread chunk is the last byte fed so far. */
  private lastReceived(i: number): boolean {
    return i === (this.unread[0] as Buffer).length - 1 && this.unread.length === 1;
  }

  /** The line so far, the buffered part and `tail`, reads ABOR. */
  private isAbort(tail: Buffer): boolean {
    if (this.buf.size + tail.length !== ABOR.length) return false;
    const head = this.buf.size > 0 ? this.buf.peek(this.buf.size) : Buffer.alloc(0);
    return isAbort(Buffer.concat([head, tail]).toString('latin1'));
  }

  /** Bytes received but not yet taken as lines: pipelined data the caller may need to refuse, or stop reading for. */
  get pending(): number {
    return this.buf.size + this.unreadSize;
  }

  /**
   * Bytes were read through that no line has come out of yet: part of one, or only a Telnet command, or the
   * start of one too long to keep, none of which `pending` counts once read through. Their effect outlives
   * them (the Telnet state, a line being dropped): bytes the next line is read with.
   */
  get midLine(): boolean {
    return this.lineBytes > 0;
  }

  /** The first unread chunk is read through `end`. */
  private consume(end: number): void {
    const chunk = this.unread[0] as Buffer;
    this.unreadSize -= end - this.offset;
    this.lineBytes += end - this.offset;
    if (end < chunk.length) {
      this.offset = end;
      return;
    }
    this.unread.shift();
    this.offset = 0;
  }

  private append(part: Buffer): void {
    this.buf.push(part);
    if (this.buf.size >= MAX_LINE) {
      this.discarding = true;
      this.buf.clear();
    }
  }

  private takeLine(): LineEvent {
    this.lineBytes = 0;
    if (this.discarding) {
      this.discarding = false;
      this.buf.clear();
      return { tooLong: true };
    }
    let text = this.buf.takeAll().toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    return { line: text };
  }

  /** Advance the Telnet state by one byte; returns a byte that belongs to the text, if any. */
  private stepTelnet(b: number): number | null {
    switch (this.telnet) {
      case 0: // b is IAC
        this.telnet = 1;
        return null;
      case 1:
        if (b === IAC) {
          this.telnet = 0;
          return IAC;
        }
        if (b >= WILL && b <= DONT) this.telnet = 2;
        else if (b === SB) this.telnet = 3;
        else this.telnet = b === IP ? 5 : 0; // two-byte command: IP, DM, AYT, ...
        return null;
      case 2:
        this.telnet = 0;
        return null;
      case 3:
        if (b === IAC) this.telnet = 4;
        return null;
      default:
        this.telnet = b === SE ? 0 : 3;
        return null;
    }
  }
}

const ABOR = 'ABOR';

/** A command line as the dispatcher reads it: the verb (upper case) up to the first space, the argument after it. */
export function parseCommand(line: string): { verb: string; arg: string } {
  const space = line.indexOf(' ');
  return { verb: (space < 0 ? line : line.slice(0, space)).toUpperCase(), arg: space < 0 ? '' : line.slice(space + 1) };
}

/**
 * The line is one the dispatcher runs as ABOR (no argument but spaces): read ahead, it aborts the transfer
 * at once. Found by a review: read as `line.trim()`, ` ABOR` aborted the upload in progress, then was
 * answered `500 Unknown command`, as the dispatcher reads it.
 */
export function isAbort(line: string): boolean {
  const { verb, arg } = parseCommand(line);
  return verb === ABOR && arg.trim() === '';
}

const HTTP_VERBS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'CONNECT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']);

/**
 * A browser or cross-protocol attack (ALPACA) talking HTTP to us: close,
 * answer nothing. `verb` is upper case. An HTTP verb is never an FTP
 * command; a request line of another method (`X /y HTTP/1.1`) is taken as
 * one only before login, and only in that exact shape: a user's path may
 * hold " HTTP/1" (`RETR about HTTP/1.txt`), and taking it for an attack
 * ended the session and scored the address toward a ban.
 */
export function isHttpVerb(verb: string, line: string, beforeLogin: boolean): boolean {
  return HTTP_VERBS.has(verb) || (beforeLogin && /^\S+ \S+ HTTP\/\d\.\d$/i.test(line));
}
