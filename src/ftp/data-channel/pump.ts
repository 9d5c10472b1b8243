import { finished, type Duplex, type Readable, type Writable } from 'node:stream';

const prematureClose = () => Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });

/**
 * Each stream piped into the next, as stream.pipeline does with Node streams:
 * resolves once every stream is done (the source read to its end, each stage
 * both ways, the last written to its finish); the first failure destroys
 * every stream not yet done and is the result, unless it was only a
 * premature close and a real error follows in the same tick. A stream that
 * finishes before the one feeding it has ended was ended by someone else (a
 * socket, on the client's FIN or close_notify) and fails as a premature
 * close: the transfer did not complete. Errors a stream emits after the end
 * are caught, never unhandled.
 *
 * What pipeline does besides, and this does not: it makes an AbortController
 * per call and aborts it at the end, and the abort's DOMException captures a
 * stack. With one call per data connection, that was a few per cent of the
 * event loop's time for a batch of small files.
 */
export function pump(...streams: [Readable, ...Duplex[], Writable]): Promise<void> {
  return new Promise((resolve, reject) => {
    const last = streams.length - 1;
    const done = streams.map(() => false);
    let failure: (Error & { code?: string }) | null = null;
    let settled = false;
    const fail = (err: Error & { code?: string }) => {
      if (settled) return;
      const first = failure === null;
      if (first || failure?.code === 'ERR_STREAM_PREMATURE_CLOSE') failure = err;
      if (!first) return;
      streams.forEach((s, i) => done[i] || s.destroy(err));
      process.nextTick(() => {
        settled = true;
        reject(failure);
      });
    };
    streams.forEach((s, i) => {
      // The listeners stay (no cleanup): they are what catches a stream's error after the end.
      finished(s, { readable: i < last, writable: i > 0 }, (err) => {
        if (err) return fail(err);
        if (i > 0 && !(streams[i - 1] as Readable).readableEnded) return fail(prematureClose());
        done[i] = true;
        if (failure === null && !settled && done.every(Boolean)) {
          settled = true;
          resolve();
        }
      });
      if (i < last) (s as Readable).pipe(streams[i + 1] as Writable);
    });
  });
}
