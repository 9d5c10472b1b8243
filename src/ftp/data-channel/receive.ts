import { finished, PassThrough, type Duplex, type Transform, type Writable } from 'node:stream';
import { pump } from './pump.js';

/**
 * An upload's data connection into its stages, as pump (stream.pipeline) would,
 * except that a refusal of the stages (quota, disk full) leaves the data
 * connection open: the client is still sending, and most (curl) read the
 * control connection only once their upload is out, so a connection reset
 * under them would show a send failure instead of the server's 552.
 * drainRefused() then lets the rest arrive before the connection ends.
 */
export async function receive(data: Duplex, ...stages: [...Transform[], Writable]): Promise<void> {
  const entry = new PassThrough();
  // A failure of the data connection (reset, ABOR's destroy) fails the stages, as pump would.
  const stop = finished(data, { writable: false }, (err) => {
    if (err) entry.destroy(err);
  });
  data.pipe(entry);
  try {
    await pump(entry, ...stages);
  } finally {
    stop();
    data.unpipe(entry);
  }
}

/**
 * What the client still sends after a refusal, into `sink` (which drops it),
 * until the client ends or `ms` have passed; then the connection is destroyed.
 */
export async function drainRefused(data: Duplex, sink: Writable, ms: number): Promise<void> {
  if (!data.destroyed && !data.readableEnded) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const stop = finished(data, { writable: false }, done);
      function done(): void {
        clearTimeout(timer);
        stop();
        resolve();
      }
      data.pipe(sink);
    });
  }
  data.destroy();
  sink.destroy();
}
