/**
 * A token bucket: bytes per second, with a burst of a tenth of a second (at
 * least 64 KiB, so one large SFTP request or upload batch is not split into
 * many waits). A transfer asks before it moves bytes and waits on a timer
 * for what the bucket lacks: the wait holds back the stream or the request,
 * which holds back the client through TCP or the SSH window, and nothing
 * sleeps the event loop. Transfers that share a bucket queue behind each
 * other's debt, so together they keep the rate.
 */
export class RateLimit {
  private tokens: number;
  private readonly burst: number;
  private last = performance.now();

  constructor(readonly bytesPerSecond: number) {
    this.burst = Math.max(64 * 1024, bytesPerSecond / 10);
    this.tokens = this.burst;
  }

  /** Take `bytes` now; how many milliseconds to wait before moving them (0: at once). */
  delay(bytes: number): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.bytesPerSecond;
  }

  /** Resolves when `bytes` may move; rejects with `signal`'s reason once it aborts. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const ms = this.delay(bytes);
    return ms === 0 ? Promise.resolve() : sleep(ms, signal);
  }
}

/** setTimeout's longest wait (about 24.8 days): a longer one would fire at once, with a TimeoutOverflowWarning. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Resolves after `ms`, however long: a tiny rate's debt can outgrow one timer.
 * An abort ends the wait at once: what waits on a slow rate must not keep
 * its owner (a closed session's checksum) around for the rest of the debt.
 */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    let timer: NodeJS.Timeout;
    const abort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const step = (left: number) => {
      const now = Math.min(left, MAX_TIMER_MS);
      timer = setTimeout(left > now ? () => step(left - now) : done, now);
    };
    const done = () => {
      signal?.removeEventListener('abort', abort);
      resolve();
    };
    signal?.addEventListener('abort', abort, { once: true });
    step(ms);
  });
}

/** One limit per direction; null: none. */
export interface Rates {
  readonly up: RateLimit | null;
  readonly down: RateLimit | null;
}

/** Bytes per second (0: none) as the limits of one session. */
export function ratesOf(up: number, down: number): Rates {
  return { up: up > 0 ? new RateLimit(up) : null, down: down > 0 ? new RateLimit(down) : null };
}
