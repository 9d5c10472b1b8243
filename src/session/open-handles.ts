import type { Account } from './account.js';
import { SluiceError } from './errors.js';

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
 * opening many channels or connections. An entry lives while the user has a session.
 */
export class HandleBook {
  private readonly users = new Map<number, { handles: UserHandles; refs: number }>();

  constructor(private readonly maxPerUser: number) {}

  acquire(account: Account): UserHandles {
    let entry = this.users.get(account.id);
    if (!entry) {
      entry = { handles: new UserHandles(this.maxPerUser), refs: 0 };
      this.users.set(account.id, entry);
    }
    entry.refs++;
    return entry.handles;
  }

  release(account: Account): void {
    const entry = this.users.get(account.id);
    if (entry && --entry.refs === 0) this.users.delete(account.id);
  }
}
