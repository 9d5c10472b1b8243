/**
 * Passive listeners open at once, per client address and per user. Each
 * session holds at most one (PASV/EPSV replace the previous one), but without
 * a cap per address and per user, a few addresses or one account logged in
 * many times could hold every port of the range, and nobody else could
 * transfer. A slot is taken when the listener opens and given back when it
 * stops listening: on accept, timeout or close.
 */
export class PassivePortShares {
  private readonly byAddress = new Map<string, number>();
  private readonly byUser = new Map<string, number>();

  constructor(
    private readonly perAddress: number,
    private readonly perUser: number,
  ) {}

  /** A release function (safe to call twice), or why no slot is free. */
  take(address: string, user: string): { release: () => void } | { refused: 'address' | 'user' } {
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

/**
 * The ports of [lo, hi] in random order, each once, drawn as they are tried:
 * predictable ports help an attacker race for a data connection, and a
 * shuffle of the whole range up front cost every PASV/EPSV time in
 * proportion to its size (2.9 ms of the event loop for 20,000 ports, where
 * one free port is usually found at the first try). A Fisher-Yates shuffle
 * done lazily: the swaps made so far are all it keeps.
 */
export function* randomPortOrder(lo: number, hi: number): Generator<number> {
  const n = hi - lo + 1;
  const swapped = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(Math.random() * (n - i));
    const drawn = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(i) ?? i);
    yield lo + drawn;
  }
}
