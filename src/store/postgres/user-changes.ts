import type pg from 'pg';
import type { Subscriber } from './notices.js';
import type { UserCache } from './user-cache.js';

/**
 * The notices that a user changed (USER_CHANGED_CHANNEL, its id as payload:
 * migrations/postgres/012), passed to the node's copy of users and then to
 * whoever must look again at what it let in: a change on another node or in
 * the CLI may take from a live session here what its login was given. The
 * listeners are told of every user (null) when the notices connection
 * listens anew, since what changed meanwhile went unheard, and when a notice
 * names nobody (a TRUNCATE) or what it names is not an id.
 */
export class UserChanges implements Subscriber {
  private readonly listeners = new Set<(userId: number | null) => void>();

  constructor(private readonly cache: UserCache) {}

  on(listener: (userId: number | null) => void): void {
    this.listeners.add(listener);
  }

  notice(payload: string): void {
    // The copy goes first: a listener that reads a user must not be answered from it.
    this.cache.notice();
    // Untrusted (anyone who may NOTIFY): what is not an id widens the look to every user, never narrows it.
    this.tell(/^[1-9][0-9]{0,14}$/.test(payload) ? Number(payload) : null);
  }

  async listening(_client: pg.Client): Promise<void> {
    await this.cache.listening();
    this.tell(null);
  }

  lost(): void {
    this.cache.lost();
  }

  private tell(userId: number | null): void {
    for (const listener of this.listeners) listener(userId);
  }
}
