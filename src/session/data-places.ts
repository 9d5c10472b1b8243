/** Why a data connection gets no place: its source's share is used up, or its user's. */
export type DataPlaceRefusal = 'address' | 'user';

/**
 * A place taken (DataPlaces.take): counted while its port listens. `idle`
 * stops counting it and `busy` counts it again, never refused: a session
 * keeps its place a while after its port stopped listening, for its next
 * port to take without a round trip (ftp/data-channel/place.ts), and a place
 * kept so must not refuse anyone else meanwhile. `release` gives it up.
 */
export interface DataPlace {
  idle(): void;
  busy(): void;
  release(): void;
}

/**
 * Places of data connections, per source (BanCheck.source: an address, an
 * IPv6 network) and per user: FTP's passive ports listening. Each session
 * holds at most one, but without a cap per source and per user, a few
 * addresses or one account logged in many times could hold every port of the
 * range, and nobody else could transfer. Kept by the coordinator, so that
 * the shares hold for the whole server: counted by each worker, one address
 * held twice its share with two workers (found by an adversarial review,
 * issue #14). A place taken again by `busy` is not refused, so a source may
 * pass its share by as many of its sessions as had just ended a transfer,
 * each for as long as its next port listens (at most its session count:
 * limits.maxSessionsPerIp, or the user's).
 */
export class DataPlaces {
  private readonly bySource = new Map<string, number>();
  private readonly byUser = new Map<string, number>();

  constructor(
    private readonly perSource: number,
    private readonly perUser: number,
  ) {}

  /** A place, counted, or why none is free. */
  take(source: string, user: string): DataPlace | DataPlaceRefusal {
    if ((this.bySource.get(source) ?? 0) >= this.perSource) return 'address';
    if ((this.byUser.get(user) ?? 0) >= this.perUser) return 'user';
    let counted = false;
    let released = false;
    const count = (delta: 1 | -1): void => {
      counted = delta === 1;
      add(this.bySource, source, delta);
      add(this.byUser, user, delta);
    };
    count(1);
    return {
      idle: () => {
        if (counted) count(-1);
      },
      busy: () => {
        if (!counted && !released) count(1);
      },
      release: () => {
        if (counted) count(-1);
        released = true;
      },
    };
  }
}

function add(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}
