import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How long a failed login still waits, `elapsedMs` after it began: until the
 * first whole multiple of the failure delay, at least one. Guessing stays
 * slow, and the answer's time does not tell which refusal it was: a
 * verification against a hash of older, weaker parameters takes less than
 * one against the dummy hash of an unknown name. When verifications queue
 * (auth.maxConcurrentHashes) past the delay, the answer waits for the next
 * multiple rather than come as soon as the work is done.
 */
export function untilAnswer(elapsedMs: number, delayMs: number): number {
  if (delayMs <= 0) return 0;
  return delayMs * Math.max(1, Math.ceil(elapsedMs / delayMs)) - elapsedMs;
}

/**
 * How much sooner than asked a timer may fire. Node counts a timer in whole
 * milliseconds of the event loop's clock, read when the loop's turn began,
 * not when the timer was set: measured here, one set for 4.95 ms after 0.05 ms
 * of work fired 4.2 ms after that work began, one set for 4.4 ms after 0.6 ms
 * of work 4.8 ms after it, and some as early as 3.4 ms.
 */
const TIMER_EARLY_MS = 2;

/**
 * Settles `untilAnswer` after now, to the microsecond, for a refusal whose
 * work began at `began` (performance.now()). A timer alone answered at a
 * moment that moved with the work (see TIMER_EARLY_MS): the 60-140 µs a store
 * takes to read a user that exists, and not one that does not, came through
 * the whole-multiple wait almost as it was, and the answer often came before
 * the delay (found by a review, test/refusal-moment.test.ts). So a timer waits
 * until shortly before the moment, and turns of the event loop (which serve
 * every other connection meanwhile) the rest of the way.
 */
export async function answerMoment(began: number, delayMs: number): Promise<void> {
  const now = performance.now();
  const at = now + untilAnswer(now - began, delayMs);
  if (at - now > TIMER_EARLY_MS) await sleep(at - now - TIMER_EARLY_MS);
  while (performance.now() < at) await new Promise<void>((resolve) => setImmediate(resolve));
}
