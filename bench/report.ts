/** Medians of the measured runs, the table, and one line per goal of #13, #14 and #16. */
import { AUDIT_OFF, fmt, SLUICE, type Measurement, type Roles, type Summary, type Target, type Workload } from './workload.js';

const MiB = 1024 * 1024;

/** What the runner saw around one measured run. */
export interface Sample {
  m: Measurement;
  cpuSeconds: number;
  loopCpuSeconds: number | null;
  peakRssMiB: number;
}

/** The runs of one workload on one server, and the error that ended them, if any. */
export interface Cell {
  target: Target;
  samples: Sample[];
  error: string | null;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The run's main figure in the workload's unit. */
export function valueOf(w: Workload, m: Measurement): number {
  if (w.unit === 'MB/s') return (m.bytes ?? 0) / 1e6 / m.seconds;
  if (w.unit === 'files/s') return (m.files ?? 0) / m.seconds;
  if (m.value === undefined) throw new Error(`${w.name}: a run in ${w.unit} must give its value`);
  return m.value;
}

function summarize(w: Workload, cell: Cell): Summary | undefined {
  const { samples } = cell;
  if (samples.length === 0) return undefined;
  const perMiB = (pick: (s: Sample) => number | null) => {
    const xs = samples.flatMap((s) => {
      const cpu = pick(s);
      return cpu !== null && s.m.bytes ? [(cpu * 1000 * MiB) / s.m.bytes] : [];
    });
    return xs.length > 0 ? median(xs) : null;
  };
  const gaps = samples.flatMap((s) => (s.m.maxGapMs === undefined ? [] : [s.m.maxGapMs]));
  const extra: Record<string, number | string> = {};
  for (const key of new Set(samples.flatMap((s) => Object.keys(s.m.extra ?? {})))) {
    const vals = samples.flatMap((s) => (s.m.extra && key in s.m.extra ? [s.m.extra[key] as number | string] : []));
    const nums = vals.filter((v): v is number => typeof v === 'number');
    extra[key] = nums.length === vals.length ? median(nums) : (vals.at(-1) as string);
  }
  return {
    target: cell.target.name,
    value: median(samples.map((s) => valueOf(w, s.m))),
    cpuMsPerMiB: perMiB((s) => s.cpuSeconds),
    loopCpuMsPerMiB: perMiB((s) => s.loopCpuSeconds),
    peakRssMiB: Math.max(...samples.map((s) => s.peakRssMiB)),
    maxGapMs: gaps.length > 0 ? Math.max(...gaps) : null,
    extra,
    runs: samples.map((s) => s.m),
  };
}

/** A workload's summaries by role, as goals see them. */
function roles(w: Workload, cells: Cell[]): Roles {
  const r: Roles = { byName: {} };
  for (const c of cells) {
    const s = summarize(w, c);
    if (!s) continue;
    r.byName[c.target.name] = s;
    if (c.target.kind !== 'sluice') r.peer = s;
    else if (c.target.name === SLUICE) r.sluice = s;
    else if (c.target.name === AUDIT_OFF) r.auditOff = s;
  }
  return r;
}

/** The sluice rows a workload runs on. */
const sluicesOf = (w: Workload) => w.sluices?.map((o) => o.name) ?? [SLUICE];

const col = (text: string, width: number) => text.padStart(width);

export function printTable(rows: { w: Workload; cells: Cell[] }[]): void {
  for (const { w, cells } of rows) {
    const r = roles(w, cells);
    const hasGap = cells.some((c) => c.samples.some((s) => s.m.maxGapMs !== undefined));
    console.log(`\n${w.title}  [${w.name}]`);
    console.log(`  ${'server'.padEnd(18)}${col(w.unit, 10)}${col('× peer', 8)}${col('CPU ms/MiB', 12)}${col('(loop)', 8)}${col('peak RSS MiB', 14)}${hasGap ? col('longest file ms', 17) : ''}`);
    for (const c of cells) {
      const s = summarize(w, c);
      if (!s) {
        console.log(`  ${c.target.name.padEnd(18)}  FAILED: ${c.error ?? 'no run'}`);
        continue;
      }
      const ratio = r.peer && c.target.kind === 'sluice' ? `${(s.value / r.peer.value).toFixed(2)}×` : '';
      const cpu = s.cpuMsPerMiB === null ? '-' : fmt(s.cpuMsPerMiB);
      const loop = s.loopCpuMsPerMiB === null ? '' : fmt(s.loopCpuMsPerMiB);
      const gap = hasGap ? col(s.maxGapMs === null ? '-' : s.maxGapMs.toFixed(0), 17) : '';
      console.log(`  ${s.target.padEnd(18)}${col(fmt(s.value), 10)}${col(ratio, 8)}${col(cpu, 12)}${col(loop, 8)}${col(s.peakRssMiB.toFixed(0), 14)}${gap}`);
      const extras = Object.entries(s.extra).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`);
      if (extras.length > 0) console.log(`  ${''.padEnd(18)}${extras.join(', ')}`);
      if (c.error) console.log(`  ${''.padEnd(18)}FAILED later: ${c.error}`);
    }
    if (r.sluice && r.auditOff) console.log(`  audit on / audit off: ${(r.sluice.value / r.auditOff.value).toFixed(2)}×`);
    const [first, ...later] = sluicesOf(w).map((name) => r.byName[name]);
    for (const s of later) if (first && s) console.log(`  ${s.target} / ${first.target}: ${(s.value / first.value).toFixed(2)}×`);
  }
}

/** One line per goal; the number of goals not met. */
export function printGoals(rows: { w: Workload; cells: Cell[] }[], skipped: Map<string, string>): number {
  console.log('\nGoals of issues #13, #14 and #16, judged on this run:');
  let notMet = 0;
  for (const { w, cells } of rows) {
    const r = roles(w, cells);
    for (const g of w.goals) {
      const v = g.judge(r);
      const lost = sluicesOf(w).find((name) => !r.byName[name]);
      const why = lost ? (skipped.get(lost) ?? `${lost} failed`) : w.peer && !r.peer ? (skipped.get(w.peer) ?? `${w.peer} failed`) : 'not measured';
      if (v && !v.met) notMet++;
      const verdict = v ? (v.met ? 'met    ' : 'NOT met') : 'n/a    ';
      console.log(`  ${verdict}  ${w.name.padEnd(18)} ${g.text}: ${v ? v.figures : why}`);
    }
  }
  return notMet;
}
