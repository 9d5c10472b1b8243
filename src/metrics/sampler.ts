import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { ProcessSample } from './events.js';

/** How often each process measures itself; a scrape sees numbers at most this old. */
export const SAMPLE_MS = 5000;

/**
 * Measure this process every SAMPLE_MS (and once at once): resident memory,
 * CPU time, and the event loop's delay over the period. Each process samples
 * itself, so a worker's numbers are its own; the timer does not keep the
 * process alive. Returns the function that stops it.
 */
export function sampleProcess(onSample: (sample: ProcessSample) => void): () => void {
  // The histogram's timer wakes the process at this interval even when idle: 20 ms
  // halves prom-client's 10 ms. A stall shorter than that may fall between two
  // ticks unseen; the stalls worth an operator's attention are longer.
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  const take = () => {
    let rssBytes;
    try {
      rssBytes = process.memoryUsage.rss();
    } catch {
      // It reads /proc, and fails when the process is out of descriptors (EMFILE): a timer's throw would end
      // the process, where the sessions holding them end alone. The next sample covers this period too.
      return;
    }
    const cpu = process.cpuUsage();
    onSample({
      rssBytes,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      // No sample yet in the period (just started): the histogram reads 0.
      loopDelayP99Seconds: delay.percentile(99) / 1e9,
      loopDelayMaxSeconds: delay.max / 1e9,
    });
    delay.reset();
  };
  take();
  const timer = setInterval(take, SAMPLE_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    delay.disable();
  };
}
