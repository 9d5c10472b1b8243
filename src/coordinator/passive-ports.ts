/** A passive listener's place in its shares: its release (safe to call twice), or which share is used up. */
export type PassivePortPlace = { release: () => void } | { refused: 'address' | 'user' };

/** Where an FTP session takes a place for a passive listener: of `address` (BanCheck.source) and `user` (its stored name). */
export interface PassivePorts {
  take(address: string, user: string): Promise<PassivePortPlace>;
}

/**
 * Passive listeners open at once, per client address and per user. Each
 * session holds at most one (PASV/EPSV replace the previous one), but without
 * a cap per address and per user, a few addresses or one account logged in
 * many times could hold every port of the range, and nobody else could
 * transfer. A slot is taken when the listener opens and given back when it
 * stops listening: on accept, timeout or close. Kept by the coordinator
 * (Coordinator.passivePorts), so that the shares hold for the whole server:
 * the range is one, whichever worker opens a listener in it (issue #14: each
 * worker counted its own, and with two one user held twice its share).
 */
export class PassivePortShares implements PassivePorts {
  private readonly byAddress = new Map<string, number>();
  private readonly byUser = new Map<string, number>();

  constructor(
    private readonly perAddress: number,
    private readonly perUser: number,
  ) {}

  async take(address: string, user: string): Promise<PassivePortPlace> {
    if ((this.byAddress.get(address) ?? 0) >= this.perAddress) return { refused: 'address' };
    if ((this.byUser.get(user) ?? 0) >= this.perUser) return { refused: 'user' };
    add(this.byAddress, address, 1);
    add(this.byUser, user, 1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        add(this.byAddress, address, -1);
        add(this.byUser, user, -1);
      },
    };
  }
}

function add(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}
