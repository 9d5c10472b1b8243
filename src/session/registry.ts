/**
 * Live connections of all front-ends, counted from accept (before any byte is
 * read, so connections that never log in count too): a total cap and a
 * per-source cap (an address, an IPv6 network), so one client cannot take
 * every slot; and logged-in sessions per user, FTP and SFTP together.
 */
export class ConnectionRegistry {
  private total = 0;
  private readonly perSource = new Map<string, number>();
  private readonly perUser = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerIp: number,
    /** 0: no limit. */
    readonly maxPerUser = 0,
  ) {}

  /** A release function, or null when a limit is reached. */
  tryAcquire(source: string): (() => void) | null {
    if (this.total >= this.maxTotal || (this.perSource.get(source) ?? 0) >= this.maxPerIp) return null;
    this.total++;
    return once(take(this.perSource, source), () => this.total--);
  }

  /** A slot for one logged-in session of `user` (its stored name), or null at the limit (`max` for this user, when given). */
  tryAcquireUser(user: string, max = this.maxPerUser): (() => void) | null {
    if (max > 0 && (this.perUser.get(user) ?? 0) >= max) return null;
    return once(take(this.perUser, user), () => undefined);
  }
}

/** Count one more under `key`; the returned function counts it back. */
function take(counts: Map<string, number>, key: string): () => void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
  return () => {
    const n = (counts.get(key) ?? 1) - 1;
    if (n === 0) counts.delete(key);
    else counts.set(key, n);
  };
}

/** Releases run once, however often a close path calls them. */
function once(release: () => void, also: () => void): () => void {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    release();
    also();
  };
}
