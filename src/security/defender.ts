import type { Logger } from 'pino';
import type { AuditSink, Service } from '../audit/events.js';
import type { Config } from '../config/schema.js';
import type { Offence, Scorer } from '../coordinator/coordinator.js';
import type { BanCheck } from './ban-check.js';

/**
 * At most this many addresses are scored at once (about 100 bytes each):
 * past it the one whose last offence is oldest is forgotten, so a flood from
 * many addresses (one IPv6 /64 holds plenty) cannot grow memory without bound.
 */
const MAX_TRACKED = 100_000;
/** Forgetting first runs past this many addresses, then each time the map has doubled or reached MAX_TRACKED. */
const PRUNE_AT = 10_000;

/**
 * Scores failures per address across every protocol and bans an address
 * that reaches defender.threshold within defender.window: for banTime, then
 * doubling with each further ban, up to maxBanTime. Bans live in the store,
 * so they survive a restart and bans added by the CLI apply at once.
 */
export class Defender implements Scorer {
  /**
   * Offence times per address, kept in the order of each address's last
   * offence (re-inserted on every score): the expired and the oldest are
   * always at the front, so forgetting them never walks the whole map.
   */
  private readonly recent = new Map<string, number[]>();
  private pruneAt = PRUNE_AT;

  constructor(
    private readonly check: BanCheck,
    private readonly settings: Config['defender'],
    private readonly audit: AuditSink | null,
    private readonly log: Logger,
  ) {}

  /** Count one offence; true when it got the address banned. */
  score(ip: string, protocol: Service, offence: Offence): boolean {
    if (!this.settings.enabled || this.check.allowed(ip)) return false;
    const now = Date.now();
    const since = now - this.settings.window * 1000;
    const times = (this.recent.get(ip) ?? []).filter((t) => t > since);
    times.push(now);
    this.recent.delete(ip);
    if (times.length >= this.settings.threshold) return this.ban(ip, protocol, offence, now);
    this.recent.set(ip, times);
    if (this.recent.size > this.pruneAt) this.forget(since);
    return false;
  }

  /** Addresses with offences in the window (bounded by MAX_TRACKED). */
  get tracked(): number {
    return this.recent.size;
  }

  private ban(ip: string, protocol: Service, offence: Offence, now: number): boolean {
    const { banTime, maxBanTime, threshold, window } = this.settings;
    const previous = this.check.bans.get(ip);
    // Connections admitted before the ban may still fail: that is the same ban, recorded once.
    if (previous && (previous.until === null || previous.until.getTime() > now)) return true;
    const recent = previous?.until && now - previous.until.getTime() < maxBanTime * 1000;
    const count = recent ? previous.count + 1 : 1;
    const seconds = Math.min(banTime * 2 ** Math.min(count - 1, 30), maxBanTime);
    const until = new Date(now + seconds * 1000);
    this.check.bans.put(ip, until, count, `${threshold} failures in ${window} s, the last ${offence}`);
    this.log.warn({ ip, until: until.toISOString(), count, offence }, 'address banned');
    this.audit?.record({ session: '', user: '', protocol, ip, port: 0 }, { event: 'ban', until: until.toISOString(), seconds, count, offence });
    return true;
  }

  /**
   * Drop addresses whose last offence left the window, and the oldest until a
   * tenth of MAX_TRACKED is free. A walk costs O(size), and the next waits
   * until the map has doubled or grown by that tenth: O(1) per score,
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
