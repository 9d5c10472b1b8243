/**
 * The Prometheus text format, as tests read a /metrics answer: each sample
 * keyed by its name and its labels in name order (`name{a="1",b="2"}`).
 */
export function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1] as string, l[2] as string] as const);
    samples.set(key(m[1] as string, Object.fromEntries(labels)), Number(m[3]));
  }
  return samples;
}

export function key(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`);
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}

/** The sample's value; 0 when absent, as Prometheus reads a counter never touched. */
export function sample(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  return samples.get(key(name, labels)) ?? 0;
}

/** Metric names in the answer (a histogram's _bucket, _sum and _count named as exposed). */
export function names(samples: Map<string, number>): Set<string> {
  return new Set([...samples.keys()].map((k) => k.replace(/\{.*$/, '')));
}
