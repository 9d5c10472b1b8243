import { Transform } from 'node:stream';

/**
 * TYPE A on the wire is CRLF. Downloads turn a bare LF into CRLF; uploads turn
 * CRLF into LF. A CR at the end of one chunk may pair with an LF at the start
 * of the next, so each transform carries one byte of state.
 */
export function toNetworkAscii(): Transform {
  let lastWasCr = false;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const out: number[] = [];
      for (const b of chunk) {
        if (b === 0x0a && !lastWasCr) out.push(0x0d);
        out.push(b);
        lastWasCr = b === 0x0d;
      }
      done(null, Buffer.from(out));
    },
  });
}

export function fromNetworkAscii(): Transform {
  let pendingCr = false;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const out: number[] = [];
      for (const b of chunk) {
        if (pendingCr && b !== 0x0a) out.push(0x0d);
        pendingCr = b === 0x0d;
        if (!pendingCr) out.push(b);
      }
      done(null, Buffer.from(out));
    },
    flush(done) {
      done(null, pendingCr ? Buffer.from([0x0d]) : null);
    },
  });
}
