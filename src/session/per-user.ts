import type { Account } from './account.js';

/**
 * One shared value per user with live sessions (a quota ledger, a handle
 * count), so all of a user's sessions on every front-end add up; made at the
 * user's first session, dropped after the last.
 */
export class PerUser<T> {
  private readonly entries = new Map<number, { value: T; refs: number }>();

  constructor(private readonly make: (account: Account) => T) {}

  protected take(account: Account): T {
    let entry = this.entries.get(account.id);
    if (!entry) {
      entry = { value: this.make(account), refs: 0 };
      this.entries.set(account.id, entry);
    }
    entry.refs++;
    return entry.value;
  }

  protected drop(account: Account): void {
    const entry = this.entries.get(account.id);
    if (entry && --entry.refs === 0) this.entries.delete(account.id);
  }
}
