import type { Duplex } from 'node:stream';
import { LazyMap } from '../../session/lazy-collections.js';

/**
 * Data connections of one control connection that one may hold open at once
 * to end them cleanly (see ClosingData.hold): more are cut at once.
 */
const PER_CONNECTION = 2;

/**
 * The same for every control connection of the process together: a client
 * that opens many control connections does not multiply them without end.
 */
const PER_PROCESS = 32;

/**
 * What a data connection held to close cleanly has left once its control
 * connection has closed: time for a close_notify already on its way, no
 * more. Before, found by a review, each waited out dataTimeout, so a client
 * that logged in, connected to passive ports, said nothing and left, over
 * and over, had the server hold two sockets more for each round.
 */
const SESSION_END_GRACE_MS = 300;

/** Every control connection's ClosingData of the process shares this count. */
export interface ClosingCount {
  count: number;
}

/**
 * The data connections of one control connection that are ending after
 * their transfer is over or was never run, but are held open a while so
 * that the client sees a clean end: under PROT P one no transfer took
 * finishes its handshake and ends with close_notify (PassiveEndpoint's
 * dismiss); a refused upload's client may go on sending until it has read
 * the refusal (drainRefused). Each has a deadline, at most PER_CONNECTION
 * are held per control connection and PER_PROCESS in the process, and the
 * control connection's close cuts them all after SESSION_END_GRACE_MS.
 */
export class ClosingData {
  private readonly held = new LazyMap<Duplex, NodeJS.Timeout>();
  private ended = false;

  constructor(private readonly process: ClosingCount) {}

  /**
   * Hold `stream` open for `ms` at most (the grace once the control
   * connection has closed), then destroy it; whatever closes it first takes
   * it off the counts. False when none more may be held: the caller
   * destroys it at once.
   */
  hold(stream: Duplex, ms: number): boolean {
    if (stream.destroyed || this.held.size >= PER_CONNECTION || this.process.count >= PER_PROCESS) return false;
    this.process.count++;
    this.held.set(stream, cutAfter(stream, this.ended ? Math.min(ms, SESSION_END_GRACE_MS) : ms));
    stream.once('close', () => {
      clearTimeout(this.held.get(stream));
      this.held.delete(stream);
      this.process.count--;
    });
    return true;
  }

  /** The control connection has closed: what is held, or held from now on, is cut after the grace. */
  end(): void {
    this.ended = true;
    for (const [stream, timer] of this.held) {
      clearTimeout(timer);
      this.held.set(stream, cutAfter(stream, SESSION_END_GRACE_MS));
    }
  }
}

function cutAfter(stream: Duplex, ms: number): NodeJS.Timeout {
  const timer = setTimeout(() => stream.destroy(), ms);
  timer.unref();
  return timer;
}
