/**
 * Live connections of all front-ends, counted at accept: a total cap and a
 * per-address cap, so one client cannot take every slot.
 */
export class ConnectionRegistry {
  private total = 0;
  private readonly perIp = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerIp: number,
  ) {}

  /** A release function, or null when a limit is reached. */
  tryAcquire(ip: string): (() => void) | null {
    const mine = this.perIp.get(ip) ?? 0;
    if (this.total >= this.maxTotal || mine >= this.maxPerIp) return null;
    this.total++;
    this.perIp.set(ip, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n === 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
    };
  }

  get size(): number {
    return this.total;
  }
}
