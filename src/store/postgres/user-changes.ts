import type pg from 'pg';
import type { Subscriber } from './notices.js';
import type { UserCache } from './user-cache.js';

/**
 * The notices that some user changed (USER_CHANGED_CHANNEL), passed to the
 * node's copy of users and then to whoever must look again at what it let in:
 * a change on another node or in the CLI may take from a live session here
 * what its login was given. The listeners are told again when the notices
 * connection listens anew, since what changed meanwhile went unheard.
 */
export class UserChanges implements Subscriber {
  private readonly listeners = new Set<() => void>();

  constructor(private readonly cache: UserCache) {}

  on(listener: () => void): void {
    this.listeners.add(listener);
  }

  notice(): void {
    // The copy goes first: a listener that reads a user must not be answered from it.
    this.cache.notice();
    this.tell();
  }

  async listening(_client: pg.Client): Promise<void> {
    await this.cache.listening();
    this.tell();
  }

  lost(): void {
    this.cache.lost();
  }

  private tell(): void {
    for (const listener of this.listeners) listener();
  }
}
