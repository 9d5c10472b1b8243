/** Sources whose held time is kept, beyond which those not seen within the window are forgotten. */
const MAX_SOURCES = 4096;

/**
 * Time that connections held their places and left without a login attempt
 * (or, on the admin API, without a request answered), summed per source (an
 * address, an IPv6 network) within a window; each `unitMs` of it so summed
 * is one offence. What is summed is the time, over the source's connections,
 * not each connection's: the places a source keeps from others are that
 * time, however it is cut. Found by reviews: connections scored only when
 * one alone held long enough were evaded by connections that left just
 * before and came back at once, and held every place unscored. A client that
 * connects and leaves at once (a probe) adds next to nothing. Kept in the
 * process that saw the connections: with workers, each sums its own.
 */
export class HeldTime {
  private readonly held = new Map<string, { ms: number; at: number }>();

  constructor(
    private readonly unitMs: number,
    private readonly windowMs: number,
  ) {}

  /** A connection from `source` held its place `ms` and left unheard: how many offences that makes. */
  add(source: string, ms: number): number {
    const now = performance.now();
    if (this.held.size >= MAX_SOURCES && !this.held.has(source)) {
      for (const [key, entry] of this.held) if (now - entry.at > this.windowMs) this.held.delete(key);
    }
    const before = this.held.get(source);
    const sum = (before && now - before.at <= this.windowMs ? before.ms : 0) + ms;
    const offences = Math.floor(sum / this.unitMs);
    // Full (thousands of sources within the window): a new source is not kept, and scored on its own time only.
    if (this.held.size < MAX_SOURCES || before) this.held.set(source, { ms: sum - offences * this.unitMs, at: now });
    return offences;
  }
}
