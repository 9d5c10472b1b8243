import type { Account } from './account.js';
import { SluiceError } from './errors.js';
import { PerUser } from './per-user.js';

/** One user's open files and directories, shared by all of that user's sessions. */
export class UserHandles {
  private open = 0;

  constructor(private readonly max: number) {}

  /** Count one more open handle, or refuse when the user has all they may have. */
  hold(): void {
    if (this.open >= this.max) throw new SluiceError('failure', 'Too many open files');
    this.open++;
  }

  release(): void {
    this.open = Math.max(0, this.open - 1);
  }
}

/**
 * Open handles per user across all their connections and channels, so that
 * one login cannot take the process's descriptors from everyone else by
 * opening many channels or connections.
 */
export class HandleBook extends PerUser<UserHandles> {
  constructor(maxPerUser: number) {
    super(() => new UserHandles(maxPerUser));
  }

  acquire(account: Account): UserHandles {
    return this.take(account);
  }

  release(account: Account): void {
    this.drop(account);
  }
}
