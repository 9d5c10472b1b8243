import { cidrMatcher } from '../auth/ip-rules.js';
import type { BanRepository } from '../store/store.js';

/**
 * Is an address banned? Bans live in the store, so one made by any process
 * (a worker's defender, `sluice ban add`) holds in every process at once;
 * addresses on defender.allowList never are.
 */
export class BanCheck {
  readonly allowed: (ip: string) => boolean;

  constructor(
    readonly bans: BanRepository,
    allowList: readonly string[],
  ) {
    this.allowed = cidrMatcher(allowList);
  }

  /** Checked at accept, before any work: one primary-key look-up. */
  banned(ip: string): boolean {
    return !this.allowed(ip) && this.bans.banned(ip);
  }
}
