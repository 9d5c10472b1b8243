import { cidrMatcher, sourceOf } from '../auth/ip-rules.js';
import type { BanRepository } from '../store/store.js';

/**
 * Is an address banned? Bans live in the store, so one made by any process
 * (a worker's defender, `sluice ban add`) holds in every process at once;
 * addresses on defender.allowList never are. An IPv6 address is banned with
 * its network (limits.ipv6Prefix, see sourceOf), as the defender bans it.
 */
export class BanCheck {
  readonly allowed: (ip: string) => boolean;

  constructor(
    readonly bans: BanRepository,
    allowList: readonly string[],
    readonly ipv6Prefix: number,
  ) {
    this.allowed = cidrMatcher(allowList);
  }

  /**
   * What the address is counted, scored and banned as. An allow-listed one
   * (your office, your monitoring) is never banned, and counts alone toward
   * maxSessionsPerIp: its neighbours in a /64 are not its clients.
   */
  source(ip: string): string {
    return this.allowed(ip) ? ip : sourceOf(ip, this.ipv6Prefix);
  }

  /** Checked at accept, before any work: a primary-key look-up, two for IPv6 (the address, its network). */
  banned(ip: string): boolean {
    if (this.allowed(ip)) return false;
    if (this.bans.banned(ip)) return true;
    const source = this.source(ip);
    return source !== ip && this.bans.banned(source);
  }
}
