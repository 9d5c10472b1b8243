import { Transform } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;

/**
 * TYPE A on the wire is CRLF. Downloads turn a bare LF into CRLF; uploads turn
 * CRLF into LF. A CR at the end of one chunk may pair with an LF at the start
 * of the next, so each transform carries one byte of state.
 *
 * A chunk is read once to size its result (unchanged, it goes on as it
 * came), then once more into one buffer of that size, byte by byte on typed
 * arrays. Before (found by a review), every byte went through an array of
 * numbers: a 256 KiB chunk of a download took 60-130 ms of the event loop,
 * and while one client downloaded a file of empty lines in TYPE A (the
 * default), another session's NOOP waited a median 113 ms, 664 at worst.
 */
export function toNetworkAscii(): Transform {
  let lastWasCr = false;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      let bare = 0;
      let crBefore = lastWasCr;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (b === LF && !crBefore) bare++;
        crBefore = b === CR;
      }
      const wasCr = lastWasCr;
      lastWasCr = crBefore;
      if (bare === 0) return done(null, chunk);
      const out = Buffer.allocUnsafe(chunk.length + bare);
      let at = 0;
      crBefore = wasCr;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (b === LF && !crBefore) out[at++] = CR;
        out[at++] = b;
        crBefore = b === CR;
      }
      done(null, out);
    },
  });
}

export function fromNetworkAscii(): Transform {
  let pendingCr = false;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      // Every byte stays but a CR right before an LF; a CR is held until the byte after it is known.
      if (!pendingCr && chunk.indexOf(CR) === -1) return done(null, chunk);
      let size = 0;
      let held = pendingCr;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (held && b !== LF) size++;
        held = b === CR;
        if (!held) size++;
      }
      const out = Buffer.allocUnsafe(size);
      let at = 0;
      held = pendingCr;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (held && b !== LF) out[at++] = CR;
        held = b === CR;
        if (!held) out[at++] = b;
      }
      pendingCr = held;
      done(null, out);
    },
    flush(done) {
      done(null, pendingCr ? Buffer.from([CR]) : null);
    },
  });
}
