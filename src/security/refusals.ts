import type { Logger } from 'pino';

/** Refusals of one connection logged one by one, at most; the rest at debug, and as a count when it closes. */
export const REFUSALS_LOGGED = 5;

/**
 * What a client is refused again and again at will (a forwarding request, a
 * channel past the limit, a PORT to a port below 1024, a data connection that
 * cannot be made) costs it a few bytes and would cost the server a warn line
 * each: found by reviews, 5,000 global requests in 3 s got 5,000 lines, and
 * 3,000 PORT commands in 0.4 s 3,000. Each connection logs its first few and
 * says how many there were when it closes.
 */
export class RefusalLog {
  private count = 0;

  constructor(private readonly log: Logger) {}

  warn(fields: object, msg: string): void {
    if (++this.count <= REFUSALS_LOGGED) this.log.warn(fields, msg);
    else this.log.debug(fields, msg);
  }

  /** At the connection's end: the count, if some went unsaid. */
  close(): void {
    if (this.count > REFUSALS_LOGGED) this.log.warn({ refused: this.count }, 'requests refused on this connection');
  }
}
