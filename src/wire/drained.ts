import type { EventEmitter } from 'node:events';

/**
 * Until `stream` emits 'drain' or the first of `ends` ('close', 'error'):
 * a writer waiting for room must also stop waiting when the stream is gone,
 * or it waits for ever. Its listeners are removed either way.
 */
export function drainedOrEnded(stream: EventEmitter, ...ends: string[]): Promise<void> {
  const events = ['drain', ...ends];
  return new Promise((resolve) => {
    const done = () => {
      for (const event of events) stream.off(event, done);
      resolve();
    };
    for (const event of events) stream.on(event, done);
  });
}
