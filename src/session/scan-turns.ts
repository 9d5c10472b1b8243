/** How many of one user's uploads may be at the scanner at once; the rest wait their turn (ScanTurns). */
export const SCANS_PER_USER = 2;

/** Where uploads wait for their turn at the scanner (ScanTurns.take): the coordinator's (Coordinator.scanTurns). */
export interface ScanQueue {
  take(who: string, signal: AbortSignal): Promise<() => void>;
}

/**
 * Turns at the scanner, per user: at most SCANS_PER_USER of a user's uploads
 * are being scanned at once, the rest wait here in the order they came. clamd
 * scans a few files at once (its MaxThreads, 10 by default) and queues the
 * rest in the order they connect: found by an adversarial review, one user's
 * many uploads at once (files slow to scan, archives clamd unpacks) took
 * every place there, and another user's upload waited behind them past
 * uploads.scanTimeout and was refused. Now a user's flood waits in front of
 * the scanner, against its own uploads' deadlines, and others go past it.
 * Anonymous FTP clients, who share one stored name, take turns per source
 * (an address, or an IPv6 network of limits.ipv6Prefix bits).
 * Kept by the coordinator, so that they hold for the whole server: with
 * workers, the primary's are taken over IPC (issue #14: each worker kept its
 * own, and a user's uploads on two workers had twice the places at the
 * scanner).
 */
export class ScanTurns implements ScanQueue {
  private readonly queues = new Map<string, { scanning: number; waiting: (() => void)[] }>();

  /**
   * A turn for one of `who`'s uploads (a user's name, or an anonymous
   * client's: see Session's upload): resolves with its release once it may
   * be scanned; rejects with `signal`'s reason if that aborts first (the
   * deadline, the upload stopped), taking no turn.
   */
  take(who: string, signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    let entry = this.queues.get(who);
    if (!entry) this.queues.set(who, (entry = { scanning: 0, waiting: [] }));
    const here = entry;
    const release = (): void => {
      const next = here.waiting.shift();
      if (next) return next();
      if (--here.scanning === 0) this.queues.delete(who);
    };
    if (here.scanning < SCANS_PER_USER) {
      here.scanning++;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const go = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(release);
      };
      const onAbort = (): void => {
        here.waiting.splice(here.waiting.indexOf(go), 1);
        reject(signal.reason);
      };
      here.waiting.push(go);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
