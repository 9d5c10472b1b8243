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
 * hashed at ten times limits.hashRate (found by a review). The sessions of
 * one connection take turns at one hashing rate, and those with the same
 * limits share one bandwidth budget: a session opened after an
 * administrator changed the user's limits gets a budget of its own at the
 * new ones (the connection's older sessions keep theirs, as any session
 * keeps the limits it opened with), but still hashes in the connection's
 * turns, at the rate its first session got: limits.hashRate, or the user's
 * download rate where that is lower.
 */
export class ConnectionBudgets {
  private readonly hashing = new Map<string, Counted<HashingTurns>>();
  private readonly rates = new Map<string, Counted<Rates>>();

  constructor(private readonly defaults: BudgetDefaults) {}

  join(connectionId: string, account: Pick<Account, 'rateUp' | 'rateDown'>): ConnectionBudget {
    const up = account.rateUp ?? this.defaults.up;
    const down = account.rateDown ?? this.defaults.down;
    // A checksum reads the file: no faster than the user may download it (found by a review: anonymous
    // sessions limited to 1 MiB/s each had the server read 128 MiB/s each by asking HASH again and again).
    const hash = slowest(this.defaults.hash, down);
    const hashing = joined(this.hashing, connectionId, () => new HashingTurns(hash > 0 ? new RateLimit(hash) : null));
    const rates = joined(this.rates, `${connectionId} ${up} ${down}`, () => ratesOf(up, down));
    return {
      rates: rates.value,
      hashing: hashing.value,
      leave: () => {
        hashing.leave();
        rates.leave();
      },
    };
  }

  /** Connections with a live budget (for tests of the shared layer). */
  get size(): number {
    return this.hashing.size;
  }
}

/** The lower of two rates, where 0 is no limit. */
function slowest(a: number, b: number): number {
  if (a === 0) return b;
  return b === 0 ? a : Math.min(a, b);
}

interface Counted<T> {
  readonly value: T;
  sessions: number;
}

/** `key`'s entry of `map`, made if missing, with one session more; leave() gives it back, the last one removes it. */
function joined<T>(map: Map<string, Counted<T>>, key: string, make: () => T): { value: T; leave(): void } {
  let entry = map.get(key);
  if (entry) entry.sessions++;
  else map.set(key, (entry = { value: make(), sessions: 1 }));
  const held = entry;
  return {
    value: held.value,
    leave: () => {
      if (--held.sessions === 0 && map.get(key) === held) map.delete(key);
    },
  };
}
