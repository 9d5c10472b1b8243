import type { Logger } from 'pino';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * `handle` the first SIGINT or SIGTERM, in place of Node's default (which
 * kills the process before the audit trail is flushed), then stop listening
 * to both: a signal of the other kind as well must not be swallowed by a
 * listener nobody needs any more (the next one is the operator's).
 */
function onFirstStopSignal(handle: (signal: string) => void): void {
  const handler = (signal: string): void => {
    for (const s of STOP_SIGNALS) process.off(s, handler);
    handle(signal);
  };
  for (const s of STOP_SIGNALS) process.on(s, handler);
}

/** The first SIGTERM or SIGINT, which starts the drain. */
export function stopSignal(): Promise<string> {
  return new Promise((resolve) => onFirstStopSignal(resolve));
}

/**
 * After the first SIGTERM or SIGINT: the next one, which cuts the drain short
 * (transfers still running are ended as aborted).
 *
 * Once the drain is over (`drained`), what is left is the close: the audit
 * trail's last records and the store's last writes (usage, last logins),
 * which wait for a store another process holds locked (up to 5 s with
 * SQLite). A signal then is said and waited out, not obeyed: obeyed, it lost
 * those writes (found by a review). Either way only one is heard, so the one
 * after it still kills a stuck process.
 */
export function nextStopSignal(log: Logger): { readonly signalled: Promise<string>; drained(): void } {
  let draining = true;
  const signalled = new Promise<string>((resolve) =>
    onFirstStopSignal((signal) => {
      if (draining) resolve(signal);
      else log.warn({ signal }, `${signal} while closing: writing the audit trail's and the store's last changes first (up to 5 s for a SQLite store another process holds locked); another ${signal} ends the process now, and loses them`);
    }),
  );
  return {
    signalled,
    drained: () => {
      draining = false;
    },
  };
}
