import type pg from 'pg';
import { noticeObject, type Subscriber } from './notices.js';

/**
 * Where an administrator ends sessions on every node: an address banned
 * (PostgresBans.add, in the statement that stores the ban: the admin API,
 * `sluice ban add`) or a user's sessions ended (DELETE /users/NAME/sessions,
 * `sluice session kill --user`). Each node ends its own, as the node that
 * took the request ends its own. The defender's bans are not sent: the
 * sessions an address has logged in go on when it guesses (SECURITY.md).
 */
export const SESSION_ENDS_CHANNEL = 'sluice_session_ends';

/** Longer is no ban's address nor user's name, nor a reason the API takes (anyone with access to the database may NOTIFY). */
const MAX_ADDRESS = 64;
const MAX_USER = 64;
const MAX_REASON = 200;

/** Tell every node, this one included, to end `user`'s sessions with `reason`: one statement, nothing stored. */
export async function endUserSessionsEverywhere(pool: pg.Pool, user: string, reason: string): Promise<void> {
  await pool.query('SELECT pg_notify($1, $2)', [SESSION_ENDS_CHANNEL, JSON.stringify({ user, reason })]);
}

/**
 * Addresses banned and users whose sessions were ended by an administrator
 * on any node, passed on so that each node ends those sessions. While the
 * notices connection is lost these are missed: those sessions then go on
 * (a banned address is still refused at its next connection).
 */
export class SessionEnds implements Subscriber {
  private readonly banned = new Set<(address: string) => void>();
  private readonly users = new Set<(user: string, reason: string) => void>();

  onAddress(listener: (address: string) => void): void {
    this.banned.add(listener);
  }

  onUser(listener: (user: string, reason: string) => void): void {
    this.users.add(listener);
  }

  notice(payload: string): void {
    const o = noticeObject(payload);
    if (o === null) return;
    if (typeof o.address === 'string' && o.address !== '' && o.address.length <= MAX_ADDRESS) {
      for (const listener of this.banned) listener(o.address);
    } else if (typeof o.user === 'string' && o.user !== '' && o.user.length <= MAX_USER
      && typeof o.reason === 'string' && o.reason.length <= MAX_REASON) {
      for (const listener of this.users) listener(o.user, o.reason);
    }
  }

  async listening(): Promise<void> {}

  lost(): void {}
}
