import net from 'node:net';
import type { Readable } from 'node:stream';
import type { ScanVerdict, Scanner } from '../session/scanning.js';

/** Where clamd listens: its unix socket, or host and port. */
export type ClamdAddress = { readonly path: string } | { readonly host: string; readonly port: number };

/** clamd's StreamMaxLength is 100 MiB by default: chunks stay far below any limit. */
const CHUNK = 64 * 1024;

/**
 * ClamAV's clamd over INSTREAM: the file's bytes in length-prefixed chunks,
 * a zero-length chunk to end, then one reply: "stream: OK" or
 * "stream: <signature> FOUND". Anything else (an error reply, a refused or
 * broken connection, no answer within the deadline) throws: the caller
 * fails closed, no file lands unscanned.
 */
export class ClamdScanner implements Scanner {
  constructor(private readonly address: ClamdAddress) {}

  scan(source: Readable, deadline: AbortSignal): Promise<ScanVerdict> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in this.address ? net.connect(this.address.path) : net.connect(this.address.port, this.address.host);
      let reply = '';
      let settled = false;
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
      socket.on('error', (err) => done(new Error(`clamd: ${err.message}`)));
      socket.on('data', (d: Buffer) => {
        reply += d.toString('utf8');
        const end = reply.indexOf('\0');
        if (end < 0) return;
        const verdict = parse(reply.slice(0, end));
        if (verdict instanceof Error) done(verdict);
        else done(null, verdict);
      });
      socket.on('close', () => done(new Error(`clamd closed the connection${reply ? `: ${reply.trim()}` : ''}`)));
      socket.once('connect', () => {
        socket.write('zINSTREAM\0');
        source.on('error', (err) => done(new Error(`reading the upload: ${err.message}`)));
        source.on('data', (chunk: Buffer) => {
          for (let at = 0; at < chunk.length; at += CHUNK) {
            const piece = chunk.subarray(at, at + CHUNK);
            const head = Buffer.allocUnsafe(4);
            head.writeUInt32BE(piece.length);
            if (!socket.write(Buffer.concat([head, piece]))) source.pause();
          }
        });
        socket.on('drain', () => source.resume());
        source.on('end', () => socket.write(Buffer.alloc(4)));
      });
    });
  }
}

/** clamd's reply to one INSTREAM, as a verdict; an ERROR reply is an Error. */
function parse(line: string): ScanVerdict | Error {
  const text = line.replace(/^stream: /, '');
  if (text === 'OK') return { clean: true };
  const found = /^(.+) FOUND$/.exec(text);
  if (found) return { clean: false, signature: found[1] as string };
  return new Error(`clamd: ${text}`);
}
