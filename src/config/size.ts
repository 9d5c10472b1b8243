const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Pure: `1048576`, `512M`, `10GiB` as a byte count; NaN when it is not a size. */
export function bytesOf(text: string): number {
  const m = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text.trim());
  const n = m ? Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? 1) : NaN;
  return Number.isSafeInteger(n) ? n : NaN;
}
