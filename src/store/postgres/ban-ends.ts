import type { Subscriber } from './notices.js';

/**
 * Where an administrator's ban (PostgresBans.add: the admin API, `sluice ban
 * add`) names its address, in the statement that stores it: each node ends
 * its own live sessions from there, as the node that took the ban ends its
 * own. The defender's bans are not sent: the sessions an address has logged
 * in go on when it guesses (SECURITY.md).
 */
export const BAN_ENDS_CHANNEL = 'sluice_ban_ends';

/** An address or network as stored is at most this long; longer is no ban's (anyone with access to the database may NOTIFY). */
const MAX_ADDRESS = 64;

/**
 * Addresses an administrator banned on any node, passed on so that each node
 * ends their sessions. While the notices connection is lost these are missed:
 * those sessions then go on, and the address is refused at its next connection.
 */
export class BanEnds implements Subscriber {
  private readonly listeners = new Set<(address: string) => void>();

  on(listener: (address: string) => void): void {
    this.listeners.add(listener);
  }

  notice(payload: string): void {
    if (payload === '' || payload.length > MAX_ADDRESS) return;
    for (const listener of this.listeners) listener(payload);
  }

  async listening(): Promise<void> {}

  lost(): void {}
}
