import type { Logger } from 'pino';
import type { AuditSink } from '../audit/events.js';
import { cidrMatcher } from '../auth/ip-rules.js';
import type { Config } from '../config/schema.js';
import type { Protocol } from '../session/account.js';
import type { BanStore } from '../store/bans.js';

/**
 * What an address is scored for. A bare connect-and-close (health checks,
 * port probes) is none of these and scores nothing.
 */
export type Offence = 'login-failed' | 'login-timeout' | 'protocol-abuse' | 'handshake-failed';

/** Past this many scored addresses, forget those with nothing left in the window. */
const PRUNE_AT = 10_000;

/**
 * Scores failures per address across every protocol and bans an address
 * that reaches defender.threshold within defender.window: for banTime, then
 * doubling with each further ban, up to maxBanTime. Bans live in the store,
 * so they survive a restart and bans added by the CLI apply at once.
 */
export class Defender {
  private readonly recent = new Map<string, number[]>();
  private readonly allowed: (ip: string) => boolean;

  constructor(
    private readonly bans: BanStore,
    private readonly settings: Config['defender'],
    private readonly audit: AuditSink | null,
    private readonly log: Logger,
  ) {
    this.allowed = cidrMatcher(settings.allowList);
  }

  /** Checked at accept, before any work: one primary-key look-up. */
  banned(ip: string): boolean {
    return !this.allowed(ip) && this.bans.banned(ip);
  }

  /** Count one offence; true when it got the address banned. */
  score(ip: string, protocol: Protocol, offence: Offence): boolean {
    if (!this.settings.enabled || this.allowed(ip)) return false;
    const now = Date.now();
    const since = now - this.settings.window * 1000;
    const times = (this.recent.get(ip) ?? []).filter((t) => t > since);
    times.push(now);
    if (times.length < this.settings.threshold) {
      this.recent.set(ip, times);
      if (this.recent.size > PRUNE_AT) this.prune(since);
      return false;
    }
    this.recent.delete(ip);
    return this.ban(ip, protocol, offence, now);
  }

  private ban(ip: string, protocol: Protocol, offence: Offence, now: number): boolean {
    const { banTime, maxBanTime, threshold, window } = this.settings;
    const previous = this.bans.get(ip);
    // Connections admitted before the ban may still fail: that is the same ban, recorded once.
    if (previous && (previous.until === null || previous.until.getTime() > now)) return true;
    const recent = previous?.until && now - previous.until.getTime() < maxBanTime * 1000;
    const count = recent ? previous.count + 1 : 1;
    const seconds = Math.min(banTime * 2 ** Math.min(count - 1, 30), maxBanTime);
    const until = new Date(now + seconds * 1000);
    this.bans.put(ip, until, count, `${threshold} failures in ${window} s, the last ${offence}`);
    this.log.warn({ ip, until: until.toISOString(), count, offence }, 'address banned');
    this.audit?.record({ session: '', user: '', protocol, ip, port: 0 }, { event: 'ban', until: until.toISOString(), seconds, count, offence });
    return true;
  }

  private prune(since: number): void {
    for (const [ip, times] of this.recent) if ((times.at(-1) ?? 0) <= since) this.recent.delete(ip);
  }
}
