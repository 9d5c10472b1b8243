import net from 'node:net';
import type { Readable } from 'node:stream';
import { ScanRefused, type ScanVerdict, type Scanner } from '../session/scanning.js';
import { shown } from '../session/unsafe-chars.js';

/** Where clamd listens: its unix socket, or host and port. */
export type ClamdAddress = { readonly path: string } | { readonly host: string; readonly port: number };

/** clamd's StreamMaxLength is 100 MiB by default: chunks stay far below any limit. */
const CHUNK = 64 * 1024;
/**
 * The most of a reply read before its end (NUL): clamd's is a line ("stream:
 * NAME FOUND", a signature name of a few dozen characters). Something else
 * on its address, or a clamd gone wrong, sending without end was read into
 * memory until the scan's deadline, hundreds of MiB a second (found by a
 * review); past this it is no reply, and the connection is closed.
 */
export const MAX_REPLY = 4096;
/** The longest signature name kept for the client, the trail and hooks; a longer one is cut, and says so. */
const MAX_SIGNATURE = 200;

/**
 * ClamAV's clamd over INSTREAM: the file's bytes in length-prefixed chunks,
 * a zero-length chunk to end, then one reply: "stream: OK" or
 * "stream: <signature> FOUND". An "... ERROR" reply is clamd refusing this
 * file (its StreamMaxLength, say) and throws ScanRefused, final; anything
 * else (a refused or broken connection, no answer within the deadline)
 * throws a plain Error, worth another try. Either way the caller fails
 * closed: no file lands unscanned.
 */
export class ClamdScanner implements Scanner {
  constructor(private readonly address: ClamdAddress) {}

  private connect(): net.Socket {
    return 'path' in this.address ? net.connect(this.address.path) : net.connect(this.address.port, this.address.host);
  }

  scan(source: Readable, deadline: AbortSignal): Promise<ScanVerdict> {
    return new Promise((resolve, reject) => {
      const socket = this.connect();
      let reply = '';
      let settled = false;
      let connected = false;
      /** Bytes of the file written to clamd so far. */
      let sent = 0;
      let cut = false;
      /** The whole file, and its end, were written to clamd. */
      let whole = false;
      const done = (err: Error | null, verdict?: ScanVerdict) => {
        if (settled) return;
        settled = true;
        deadline.removeEventListener('abort', onAbort);
        source.destroy();
        socket.destroy();
        if (err) reject(err);
        else resolve(verdict as ScanVerdict);
      };
      const onAbort = () => done(new Error('clamd did not answer in time'));
      deadline.addEventListener('abort', onAbort);
      const answered = (): ScanVerdict | Error | null => {
        const end = reply.indexOf('\0');
        return end < 0 ? null : parse(reply.slice(0, end));
      };
      // "Clean" holds only for the bytes clamd had: one that came before the whole file was sent
      // (a scanner that answers before it read, something else on its address) is no verdict, and
      // was taken for one (found by a review: a reply of "stream: OK" at the connect let every
      // upload in). Malware found in part of the file is found, and a refusal is a refusal.
      const settle = (verdict: ScanVerdict | Error) => {
        if (verdict instanceof Error) return done(verdict);
        if (verdict.clean && !whole) return done(new Error('clamd: answered OK before the whole file was sent'));
        done(null, verdict);
      };
      // The connection ended with no reply. clamd answers its size limit and closes while the
      // file is still coming: the write that meets the closed socket (EPIPE, ECONNRESET) can
      // destroy it before the reply is read. A cut after bytes were sent is asked about once,
      // with no bytes: would clamd take this many? Its refusal is final; anything else is
      // the broken connection it looks like, worth another try.
      const ended = (err: Error) => {
        if (cut || settled) return;
        cut = true;
        if (!connected || sent === 0) return done(err);
        void this.refuses(sent, deadline).then((refusal) => done(refusal ?? err));
      };
      socket.on('error', (err) => {
        const verdict = answered();
        if (verdict) settle(verdict);
        else ended(new Error(`clamd: ${err.message}`));
      });
      socket.on('data', (d: Buffer) => {
        reply += d.toString('utf8');
        const verdict = answered();
        if (verdict) settle(verdict);
        else if (reply.length > MAX_REPLY) done(new Error(`clamd: a reply longer than ${MAX_REPLY} bytes with no end, not clamd's: ${shown(reply.slice(0, 80))}...`));
      });
      socket.on('close', () => {
        const verdict = answered();
        if (verdict) settle(verdict);
        else ended(new Error(`clamd closed the connection${reply ? `: ${reply.trim()}` : ''}`));
      });
      socket.once('connect', () => {
        connected = true;
        socket.write('zINSTREAM\0');
        source.on('error', (err) => done(new Error(`reading the upload: ${err.message}`)));
        source.on('data', (chunk: Buffer) => {
          for (let at = 0; at < chunk.length; at += CHUNK) {
            const piece = chunk.subarray(at, at + CHUNK);
            const head = Buffer.allocUnsafe(4);
            head.writeUInt32BE(piece.length);
            sent += piece.length;
            if (!socket.write(Buffer.concat([head, piece]))) source.pause();
          }
        });
        socket.on('drain', () => source.resume());
        source.on('end', () => {
          whole = true;
          socket.write(Buffer.alloc(4));
        });
      });
    });
  }

  /**
   * Whether clamd refuses a stream of `bytes` outright: an INSTREAM whose first chunk
   * announces that many, and no bytes. clamd checks a chunk's length against its
   * StreamMaxLength as soon as it reads it, so a refusal comes at once; one it would
   * take waits for bytes that never come, and after PROBE_MS the answer is no.
   */
  private refuses(bytes: number, deadline: AbortSignal): Promise<ScanRefused | null> {
    return new Promise((resolve) => {
      const socket = this.connect();
      let reply = '';
      const finish = (refusal: ScanRefused | null) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(refusal);
      };
      const timer = setTimeout(() => finish(null), deadline.aborted ? 0 : PROBE_MS);
      socket.on('error', () => finish(null));
      socket.on('close', () => finish(null));
      socket.on('data', (d: Buffer) => {
        reply += d.toString('utf8');
        const end = reply.indexOf('\0');
        if (end < 0 && reply.length > MAX_REPLY) return finish(null);
        if (end < 0) return;
        const verdict = parse(reply.slice(0, end));
        finish(verdict instanceof ScanRefused ? verdict : null);
      });
      socket.once('connect', () => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(Math.min(bytes, 0xffffffff));
        socket.write(Buffer.concat([Buffer.from('zINSTREAM\0'), head]));
      });
    });
  }
}

/** How long the probe after a cut stream waits for clamd's refusal. */
const PROBE_MS = 1000;

/**
 * clamd's reply to one INSTREAM, as a verdict; an ERROR reply is a ScanRefused, anything else an Error.
 * A signature's name reaches the client's error, the trail and hooks: its line breaks and other control
 * characters are escaped, and a long one is cut (found by a review: a reply "stream: X\r\n226 ok FOUND"
 * gave an FTP client a second reply it never asked for).
 */
export function parse(line: string): ScanVerdict | Error {
  const text = line.replace(/^stream: /, '').trim();
  if (text === 'OK') return { clean: true };
  const found = /^(.+) FOUND$/s.exec(text);
  if (found) return { clean: false, signature: signatureOf(found[1] as string) };
  const refused = /^(.*) ERROR$/s.exec(text);
  if (refused) {
    const what = refused[1] as string;
    return new ScanRefused(/size limit exceeded/i.test(what) ? 'too large to scan' : 'the scanner refused it', `clamd: ${shown(text)}`);
  }
  return new Error(`clamd: ${shown(text)}`);
}

/** A signature's name as it may be shown: one printable line of at most MAX_SIGNATURE characters. */
function signatureOf(name: string): string {
  const safe = shown(name);
  return safe.length <= MAX_SIGNATURE ? safe : `${safe.slice(0, MAX_SIGNATURE)}... (cut)`;
}
