/** Where a limited thing is waited for by key (Turns.take): the coordinator's queues (Coordinator.scanTurns, judgeTurns, keepTurns). */
export interface TurnQueue {
  take(who: string, signal: AbortSignal): Promise<() => void>;
}

/**
 * Turns by key: at most `perKey` of one key's holders at once, the rest
 * waiting here in the order they came. The scanner's turns per user
 * (SCANS_PER_USER), the defender's turns to judge a login per source
 * (Gate.turnToJudge) and the quarantine's keeps (QuarantineDir). Kept by the coordinator, so that they hold for the
 * whole server: with workers, the primary's are taken over IPC (issue #14:
 * each worker kept its own, and a user's uploads on two workers had twice
 * the places at the scanner, an address's guesses twice the judging).
 */
export class Turns implements TurnQueue {
  private readonly queues = new Map<string, { holding: number; waiting: (() => void)[] }>();

  constructor(private readonly perKey: number) {}

  /**
   * A turn for `who`: resolves with its release once it comes; rejects with
   * `signal`'s reason if that aborts first (the deadline, the holder gone),
   * taking no turn.
   */
  take(who: string, signal: AbortSignal): Promise<() => void> {
    // A rejection, as every other refusal here: a caller chaining .catch() on the call would miss a throw.
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    let entry = this.queues.get(who);
    if (!entry) this.queues.set(who, (entry = { holding: 0, waiting: [] }));
    const here = entry;
    const release = (): void => {
      const next = here.waiting.shift();
      if (next) return next();
      if (--here.holding === 0) this.queues.delete(who);
    };
    if (here.holding < this.perKey) {
      here.holding++;
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
