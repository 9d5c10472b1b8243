import { randomFill } from 'node:crypto';
import type { Channel } from '../coordinator/ipc-client.js';

/** A ping a quarter of the timeout: one answer delayed by a busy moment is not a hang. */
const PINGS_PER_TIMEOUT = 4;
/**
 * The pool is given this many timeouts: its answer waits behind every job
 * queued before it (file calls, argon2 at about 30 ms a login), so a worker
 * whose disk is merely slow under many transfers answers late, while one
 * whose every thread waits on a hung mount never answers at all.
 */
export const POOL_TIMEOUTS = 4;

/** What a worker was found stuck in: its event loop, or its thread pool with the loop still running. */
export type Hang = 'loop' | 'pool';

/**
 * The primary's watch over one worker: a worker that crashes is seen by its
 * exit, but one that hangs (its event loop stuck in a loop, or every thread
 * of its libuv pool stuck on a hung network mount) kept its sessions, and its
 * share of the server's turns (a source's turns to have logins judged are
 * server-wide), for ever, while the cluster module went on handing it new
 * connections that nobody answered. The worker answers each `ping` twice
 * (answerPings, below): from its event loop at once, and once a job has been
 * through its thread pool. One whose loop answers nothing for `timeoutMs`,
 * or whose pool answers nothing for POOL_TIMEOUTS times that, is hung, and
 * `onHung` ends it. Its exit then takes the path of a crash: what it held is
 * given back, its transfers are recorded aborted, another worker is started.
 */
export function watchWorker(ping: () => void, timeoutMs: number, onHung: (hang: Hang) => void): { answered(from: Hang): void; stop(): void } {
  const every = Math.max(100, Math.floor(timeoutMs / PINGS_PER_TIMEOUT));
  let pinged = false;
  /** Ticks in a row with no answer of each kind since the one before. */
  const silent = { loop: 0, pool: 0 };
  const heard = { loop: false, pool: false };
  const timer = setInterval(() => {
    // Counted in ticks, not read off the clock: after the primary itself was stopped (a paused VM, SIGSTOP), the
    // first tick comes before the answers that waited meanwhile are read, and the time since the last one read
    // would have ended every worker.
    for (const kind of ['loop', 'pool'] as const) {
      silent[kind] = heard[kind] || !pinged ? 0 : silent[kind] + 1;
      heard[kind] = false;
    }
    const hang = silent.loop >= PINGS_PER_TIMEOUT ? 'loop' : silent.pool >= PINGS_PER_TIMEOUT * POOL_TIMEOUTS ? 'pool' : null;
    if (hang) {
      clearInterval(timer);
      onHung(hang);
      return;
    }
    pinged = true;
    ping();
  }, every);
  timer.unref();
  return {
    // Late or not, an answer says the worker ran since its ping was sent.
    answered: (from) => void (heard[from] = true),
    stop: () => clearInterval(timer),
  };
}

/**
 * The worker's side: each ping is answered from the event loop at once, and
 * again once a job has been through libuv's thread pool. A worker whose
 * every pool thread is stuck still runs its loop, but serves no file and
 * judges no password, so it must not look alive. randomFill's job touches no
 * file system: only a pool that runs nothing holds it.
 */
export function answerPings(channel: Pick<Channel, 'send' | 'onMessage'>): void {
  const probe = Buffer.alloc(1);
  channel.onMessage((m) => {
    if (m.t !== 'ping') return;
    channel.send({ t: 'pong', from: 'loop' });
    randomFill(probe, () => channel.send({ t: 'pong', from: 'pool' }));
  });
}
