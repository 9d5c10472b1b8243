import type { FailureTally } from '../coordinator/shared-state.js';

/**
 * At most this many addresses are scored at once (about 100 bytes each):
 * past it the one whose last offence is oldest is forgotten, so a flood from
 * many addresses (one IPv6 /64 holds plenty) cannot grow memory without bound.
 */
const MAX_TRACKED = 100_000;
/** Forgetting first runs past this many addresses, then each time the map has doubled or reached MAX_TRACKED. */
const PRUNE_AT = 10_000;

/** The defender's offence counts of one node, in its memory. */
export class MemoryFailureTally implements FailureTally {
  /**
   * Offence times per address, kept in the order of each address's last
   * offence (re-inserted on every add): the expired and the oldest are
   * always at the front, so forgetting them never walks the whole map.
   */
  private readonly recent = new Map<string, number[]>();
  private pruneAt = PRUNE_AT;

  async add(ip: string, now: number, since: number): Promise<number> {
    const times = (this.recent.get(ip) ?? []).filter((t) => t > since);
    times.push(now);
    this.recent.delete(ip);
    this.recent.set(ip, times);
    if (this.recent.size > this.pruneAt) this.forget(since);
    return times.length;
  }

  async clear(ip: string): Promise<void> {
    this.recent.delete(ip);
  }

  /** Addresses with offences in the window (bounded by MAX_TRACKED). */
  get tracked(): number {
    return this.recent.size;
  }

  /**
   * Drop addresses whose last offence left the window, and the oldest until a
   * tenth of MAX_TRACKED is free. A walk costs O(size), and the next waits
   * until the map has doubled or grown by that tenth: O(1) per add,
   * amortized. The walk stops at the first address still in the window and
   * under the cap (all later ones are newer); a clock stepping back only
   * stops it early.
   */
  private forget(since: number): void {
    const keep = MAX_TRACKED * 0.9;
    for (const [ip, times] of this.recent) {
      if (this.recent.size <= keep && (times.at(-1) ?? 0) > since) break;
      this.recent.delete(ip);
    }
    this.pruneAt = Math.min(Math.max(PRUNE_AT, this.recent.size * 2), MAX_TRACKED);
  }
}
