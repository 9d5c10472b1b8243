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
