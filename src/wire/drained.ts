import type { EventEmitter } from 'node:events';

/**
 * Until `stream` emits 'drain' or `end` ('close', 'error'), or `stop`
 * aborts: a writer waiting for room must also stop waiting when the stream
 * is gone, or it waits for ever; `stop` says so when the stream itself
 * tells too late (an SSH channel, see scp/wire.ts). Its listeners are
 * removed either way.
 */
export function drainedOrEnded(stream: EventEmitter, end: string, stop?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (stop?.aborted) return resolve();
    const done = () => {
      stream.off('drain', done);
      stream.off(end, done);
      stop?.removeEventListener('abort', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on(end, done);
    stop?.addEventListener('abort', done);
  });
}
