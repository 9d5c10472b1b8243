import type { Account } from './account.js';
import { HashingTurns } from './checksum.js';
import { ratesOf, RateLimit, type Rates } from './rate-limit.js';

/** Bytes per second (0: none): the server's defaults for users without their own, and the hashing rate. */
export interface BudgetDefaults {
  readonly up: number;
  readonly down: number;
  readonly hash: number;
}

/** What every session of one connection draws on together, until the last of them leaves. */
export interface ConnectionBudget {
  readonly rates: Rates;
  readonly hashing: HashingTurns;
  /** The session is closed: the budget goes with its connection's last session. */
  leave(): void;
}

/**
 * The bandwidth limits and the checksums' hashing rate, per connection: an
 * SSH connection opens a session per channel (up to
 * sftp.maxChannelsPerConnection), and each had limits of its own, so a user
 * limited to 1 MiB/s read at 8.5 MiB/s on eight channels, and ten channels
 * hashed at ten times limits.hashRate (found by a review). Sessions of one
 * connection with the same limits share one budget: a connection keeps the
 * limits as sessions on one connection do over FTP. A session opened after
 * an administrator changed the user's limits gets a budget of its own at the
 * new ones: the connection's older sessions keep theirs, as any session
 * keeps the limits it opened with.
 */
export class ConnectionBudgets {
  private readonly shared = new Map<string, { budget: ConnectionBudget; sessions: number }>();

  constructor(private readonly defaults: BudgetDefaults) {}

  join(connectionId: string, account: Pick<Account, 'rateUp' | 'rateDown'>): ConnectionBudget {
    const up = account.rateUp ?? this.defaults.up;
    const down = account.rateDown ?? this.defaults.down;
    const key = `${connectionId} ${up} ${down}`;
    const held = this.shared.get(key);
    if (held) {
      held.sessions++;
      return held.budget;
    }
    const budget: ConnectionBudget = {
      rates: ratesOf(up, down),
      hashing: new HashingTurns(this.defaults.hash > 0 ? new RateLimit(this.defaults.hash) : null),
      leave: () => {
        const entry = this.shared.get(key);
        if (entry && --entry.sessions === 0) this.shared.delete(key);
      },
    };
    this.shared.set(key, { budget, sessions: 1 });
    return budget;
  }

  /** Connections with a live budget (for tests and metrics of the shared layer). */
  get size(): number {
    return this.shared.size;
  }
}
