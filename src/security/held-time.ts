/** Sources whose held time is kept; past this the one seen least recently is forgotten. */
const MAX_SOURCES = 4096;

/**
 * Time that connections held their places and left without a login attempt
 * (or, on the admin API, without a request answered), summed per source (an
 * address, an IPv6 network) over a window from the first of them; each
 * `unitMs` of it so summed is one offence. What is summed is the time, over
 * the source's connections, not each connection's: the places a source
 * keeps from others are that time, however it is cut. Found by reviews:
 * connections scored only when one alone held long enough were evaded by
 * connections that left just before and came back at once, and held every
 * place unscored. One connection counts at most `unitMs`, one offence, as
 * one that a deadline ends does; a client that connects and leaves at once
 * (a probe) adds next to nothing. Kept in the process that saw the
 * connections: with workers, each sums its own.
 */
export class HeldTime {
  /** In order of last use, the least recent first: a full table forgets it, not a source holding places now. */
  private readonly held = new Map<string, { ms: number; since: number }>();

  constructor(
    private readonly unitMs: number,
    private readonly windowMs: number,
  ) {}

  /** A connection from `source` held its place `ms` and left unheard: how many offences that makes. */
  add(source: string, ms: number): number {
    const now = performance.now();
    const before = this.held.get(source);
    this.held.delete(source);
    const current = before && now - before.since <= this.windowMs ? before : { ms: 0, since: now };
    const sum = current.ms + Math.min(ms, this.unitMs);
    const offences = Math.floor(sum / this.unitMs);
    this.held.set(source, { ms: sum - offences * this.unitMs, since: current.since });
    if (this.held.size > MAX_SOURCES) this.held.delete(this.held.keys().next().value as string);
    return offences;
  }
}
