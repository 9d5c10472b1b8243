/**
 * The least a limited transfer moves at once, or a second's worth when that
 * is less, so no gap exceeds a second. Smaller pieces would spend a large
 * share of a low rate on headers (a TLS record's 22 to 29 bytes, an SFTP
 * DATA reply's 13 and its SSH packet's 40 or so); at 1 KiB they cost a few
 * percent.
 */
const MIN_STEP = 1024;

/**
 * A token bucket: bytes per second, with a burst of a tenth of a second, or
 * MIN_STEP at rates under 10 KiB/s (a second's worth under 1 KiB/s). The
 * burst is also the most a limited transfer moves at once: pieces() cuts
 * what a transfer holds (a 256 KiB read, a socket's 64 KiB) to it, so bytes
 * flow in steps of at most a tenth of a second (a second at the lowest
 * rates) and the first burst is no free pass for a small file. A transfer
 * asks before it moves bytes and waits on a timer for what the bucket lacks:
 * the wait holds back the stream or the request, which holds back the client
 * through TCP or the SSH window, and nothing sleeps the event loop.
 * Transfers that share a bucket queue behind each other's debt, so together
 * they keep the rate.
 */
export class RateLimit {
  private tokens: number;
  /** Bytes the bucket holds at most, and the largest piece it grants (whole bytes). */
  readonly burst: number;
  private last = performance.now();

  constructor(readonly bytesPerSecond: number) {
    this.burst = Math.max(1, Math.floor(Math.max(bytesPerSecond / 10, Math.min(bytesPerSecond, MIN_STEP))));
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

  /**
   * Resolves when `bytes` may move; rejects with `signal`'s reason once it
   * aborts, giving the bytes back: they never moved, and the next transfer
   * on the bucket must not wait out their debt (found by a review: 32
   * pipelined READs cancelled left the next download 4 s of silence).
   */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const ms = this.delay(bytes);
    if (ms === 0) return Promise.resolve();
    return sleep(ms, signal).catch((err: unknown) => {
      this.refund(bytes);
      throw err;
    });
  }

  /**
   * Take at most one burst of the `want` bytes: resolves with how many (at
   * least 1 when `want` is) once they may move.
   */
  async next(want: number, signal?: AbortSignal): Promise<number> {
    const n = Math.min(want, this.burst);
    await this.take(n, signal);
    return n;
  }

  /** Give back bytes taken but not moved (a read that met the end of the file). */
  refund(bytes: number): void {
    this.tokens = Math.min(this.burst, this.tokens + bytes);
  }
}

/**
 * `chunk` in pieces of at most `rate`'s burst, each yielded once it may move;
 * ends with `signal`'s reason once it aborts. A piece is a view of the chunk:
 * nothing is copied.
 */
export async function* pieces(rate: RateLimit, chunk: Buffer, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for (let at = 0; at < chunk.length; ) {
    signal?.throwIfAborted();
    const n = await rate.next(chunk.length - at, signal);
    yield chunk.subarray(at, at + n);
    at += n;
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
