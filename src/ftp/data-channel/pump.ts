import { finished, type Duplex, type Readable, type Writable } from 'node:stream';

/**
 * Each stream piped into the next, as stream.pipeline does with Node streams:
 * resolves once the last has finished; the first failure (an error, or a
 * stream closed before its end) destroys every stream not yet done and
 * rejects with it. Errors a stream emits after that are caught, never
 * unhandled. What pipeline does besides, and this does not: it makes an
 * AbortController per call and aborts it at the end, and the abort's
 * DOMException captures a stack. With one call per data connection, that
 * was a few per cent of the event loop's time for a batch of small files.
 */
export function pump(...streams: [Readable, ...Duplex[], Writable]): Promise<void> {
  return new Promise((resolve, reject) => {
    const last = streams.length - 1;
    const done = streams.map(() => false);
    let over = false;
    const end = (err?: Error) => {
      if (over) return;
      over = true;
      if (!err) return resolve();
      streams.forEach((s, i) => done[i] || s.destroy(err));
      reject(err);
    };
    streams.forEach((s, i) => {
      // The source read to its end, each stage both ways, the last written to its finish. The
      // listeners stay (no cleanup): they are what catches a stream's error after the end.
      finished(s, { readable: i < last, writable: i > 0 }, (err) => {
        if (err) return end(err);
        done[i] = true;
        if (i === last) end();
      });
      if (i < last) (s as Readable).pipe(streams[i + 1] as Writable);
    });
  });
}
