/** Why a data connection gets no place: its source's share is used up, or its user's. */
export type DataPlaceRefusal = 'address' | 'user';

/**
 * Places of data connections, per source (BanCheck.source: an address, an
 * IPv6 network) and per user: FTP's passive ports. Each session holds at
 * most one, but without a cap per source and per user, a few addresses or
 * one account logged in many times could hold every port of the range, and
 * nobody else could transfer. Kept by the coordinator, so that the shares
 * hold for the whole server: counted by each worker, one address held twice
 * its share with two workers (found by an adversarial review, issue #14).
 */
export class DataPlaces {
  private readonly bySource = new Map<string, number>();
  private readonly byUser = new Map<string, number>();

  constructor(
    private readonly perSource: number,
    private readonly perUser: number,
  ) {}

  /** A release function (safe to call twice), or why no place is free. */
  take(source: string, user: string): (() => void) | DataPlaceRefusal {
    if ((this.bySource.get(source) ?? 0) >= this.perSource) return 'address';
    if ((this.byUser.get(user) ?? 0) >= this.perUser) return 'user';
    add(this.bySource, source, 1);
    add(this.byUser, user, 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      add(this.bySource, source, -1);
      add(this.byUser, user, -1);
    };
  }
}

function add(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}
