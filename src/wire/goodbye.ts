import type { Socket } from 'node:net';

/**
 * How long a connection the server ended may take to close before its socket
 * is destroyed: long enough for the last reply to leave, and a client that
 * never closes its side, or never reads, must not keep its descriptor, its
 * connection slot and its session's memory for ever.
 */
export const GOODBYE_MS = 2000;

/**
 * Every end() of `socket`, whoever calls it, destroys it GOODBYE_MS later:
 * for a front-end whose protocol library ends connections from many places
 * (ssh2's end(), on an idle timeout, a refusal, an administrator's end of
 * the session, the drain, a protocol error), each of which only ended this
 * side. A client that did not close its own (found here: a half-open SSH
 * connection after its idle timeout was held for as long as the client
 * liked) kept the connection. Node ends this side itself when the client
 * ends its own (allowHalfOpen off), so a client that half-closes and reads
 * on has the same 2 s: SSH clients never half-close.
 */
export function destroyAfterGoodbye(socket: Socket): void {
  const end = socket.end;
  let timer: NodeJS.Timeout | null = null;
  socket.end = function (this: Socket, ...args: unknown[]) {
    if (timer === null) {
      timer = setTimeout(() => socket.destroy(), GOODBYE_MS).unref();
      socket.once('close', () => clearTimeout(timer ?? undefined));
    }
    return (end as (...a: unknown[]) => Socket).apply(this, args);
  } as Socket['end'];
}
