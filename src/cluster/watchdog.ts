import { randomFill } from 'node:crypto';
import type { Channel } from '../coordinator/ipc-client.js';

/** A ping a quarter of the timeout: one answer delayed by a busy moment is not a hang. */
const PINGS_PER_TIMEOUT = 4;

/**
 * The primary's watch over one worker: a worker that crashes is seen by its
 * exit, but one that hangs (its event loop stuck in a loop, or every thread
 * of its libuv pool stuck on a hung network mount) kept its sessions, and its
 * share of the server's turns (a source's turns to have logins judged are
 * server-wide), for ever, while the cluster module went on handing it new
 * connections that nobody answered. The worker answers each `ping` once its
 * event loop and its thread pool have both run (answerPings, below); one
 * that has answered none for `timeoutMs` is hung, and `onHung` ends it. Its
 * exit then takes the path of a crash: what it held is given back, its
 * transfers are recorded aborted, another worker is started.
 */
export function watchWorker(ping: () => void, timeoutMs: number, onHung: () => void): { answered(): void; stop(): void } {
  const every = Math.max(100, Math.floor(timeoutMs / PINGS_PER_TIMEOUT));
  let pinged = false;
  /** Ticks in a row with no answer since the one before. */
  let silent = 0;
  let heard = false;
  const timer = setInterval(() => {
    // Counted in ticks, not read off the clock: after the primary itself was stopped (a paused VM, SIGSTOP), the
    // first tick comes before the answers that waited meanwhile are read, and the time since the last one read
    // would have ended every worker.
    silent = heard || !pinged ? 0 : silent + 1;
    heard = false;
    if (silent >= PINGS_PER_TIMEOUT) {
      clearInterval(timer);
      onHung();
      return;
    }
    pinged = true;
    ping();
  }, every);
  timer.unref();
  return {
    // Late or not, an answer says the worker ran since its ping was sent.
    answered: () => void (heard = true),
    stop: () => clearInterval(timer),
  };
}

/**
 * The worker's side: each ping is answered once a job has been through
 * libuv's thread pool as well as the event loop. A worker whose every pool
 * thread is stuck still runs its loop, but serves no file and judges no
 * password, so it must not look alive. randomFill's job touches no file
 * system: only a pool that runs nothing holds it.
 */
export function answerPings(channel: Pick<Channel, 'send' | 'onMessage'>): void {
  const probe = Buffer.alloc(1);
  channel.onMessage((m) => {
    if (m.t !== 'ping') return;
    randomFill(probe, () => channel.send({ t: 'pong' }));
  });
}
