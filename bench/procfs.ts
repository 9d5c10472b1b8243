/**
 * A server's CPU and memory from /proc (Linux), the same way for sluice (one
 * process, or a primary and its cluster workers) and for the peers (a
 * listener that forks per connection): always the whole process tree.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Usage } from './workload.js';

const TICKS = 100; // USER_HZ, 100 on every Linux ABI Node runs on

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null; // the process (or thread) exited between listing and reading
  }
}

/** Fields of /proc/<pid>/stat after the command name, which may hold spaces. */
function statFields(path: string): string[] | null {
  const text = read(path);
  return text === null ? null : (text.slice(text.lastIndexOf(') ') + 2).split(' '));
}

/** utime + stime (+ cutime + cstime: children already reaped) in seconds. */
function cpuOf(path: string, withChildren: boolean): number {
  const f = statFields(path);
  if (!f) return 0;
  const ticks = Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0);
  return ticks / TICKS;
}

/** Children of every thread of `pid`: the kernel lists a child under the thread that forked it. */
function childrenOf(pid: number): number[] {
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return []; // exited
  }
  return threads.flatMap((t) => (read(`/proc/${pid}/task/${t}/children`) ?? '').split(' ').filter((s) => s !== '').map(Number));
}

/** Every live descendant of `pid` (sluice's cluster workers, the peers' per-connection processes). */
export function descendants(pid: number): number[] {
  const found: number[] = [];
  const walk = (p: number) => {
    for (const child of childrenOf(p)) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** Whether `pid` has a handler for signal number `signo` (SigCgt), i.e. the signal will not end it. */
export function catchesSignal(pid: number, signo: number): boolean {
  const m = /SigCgt:\s+([0-9a-f]+)/.exec(read(`/proc/${pid}/status`) ?? '');
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << BigInt(signo - 1))) !== 0n;
}

function statusKiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${key}:\\s+(\\d+)`).exec(read(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : 0;
}

/**
 * CPU of the process and of all its descendants: from its cgroup when it has
 * one (see cgroup.ts), else from /proc, reaped or alive (a reaped child's time
 * lands in its parent's cutime/cstime once waited for); resident memory of the
 * whole tree now. `loopThreads`: every process of the tree is a Node process
 * (sluice's primary and workers), whose main threads' CPU is that of their
 * event loops.
 */
export function usageOf(pid: number, loopThreads: boolean, cgroupCpu: (() => number) | null): Usage {
  const tree = descendants(pid);
  const cpuSeconds = cgroupCpu?.() ?? cpuOf(`/proc/${pid}/stat`, true) + tree.reduce((s, p) => s + cpuOf(`/proc/${p}/stat`, true), 0);
  return {
    cpuSeconds,
    loopCpuSeconds: loopThreads ? [pid, ...tree].reduce((s, p) => s + cpuOf(`/proc/${p}/task/${p}/stat`, false), 0) : null,
    rssMiB: treeRssMiB(pid, tree),
  };
}

/**
 * Runs `transfer` until each process of sluice's tree that serves sessions
 * (its cluster workers; the process itself with `workers: 1`) has served one,
 * at most four times per process: the one whose CPU grew most during a
 * transfer is the one that served it. Which worker takes a connection is the
 * primary's choice, so counting runs is not enough. Returns how many ran and
 * the processes left unserved (none, unless the primary kept choosing the same).
 */
export async function onEveryWorker(pid: number, transfer: () => Promise<unknown>): Promise<{ runs: number; missed: number }> {
  const workers = descendants(pid);
  const serving = workers.length > 0 ? workers : [pid];
  const served = new Set<number>();
  let runs = 0;
  while (served.size < serving.length && runs < 4 * serving.length) {
    const before = serving.map((p) => cpuOf(`/proc/${p}/stat`, false));
    await transfer();
    runs++;
    const grew = serving.map((p, i) => cpuOf(`/proc/${p}/stat`, false) - before[i]!);
    served.add(serving[grew.indexOf(Math.max(...grew))]!);
  }
  return { runs, missed: serving.length - served.size };
}

/** Resident memory now of the process and its descendants. */
function treeRssMiB(pid: number, tree = descendants(pid)): number {
  return [pid, ...tree].reduce((s, p) => s + statusKiB(p, 'VmRSS'), 0) / 1024;
}

/**
 * Proportional resident memory of the process and its descendants: a page
 * that n of them share (the node binary's, the code they all load) counts
 * 1/n in each, so the sum counts it once, where the RSS sum counts it n times.
 */
export function treePssMiB(pid: number): number {
  return [pid, ...descendants(pid)].reduce((s, p) => s + smapsKiB(p, 'Pss'), 0) / 1024;
}

function smapsKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(read(`/proc/${pid}/smaps_rollup`) ?? '');
  return m ? Number(m[1]) : 0;
}

/**
 * Waits (up to `ms`) until the process has no children left: the run's
 * sessions have ended, and without a cgroup their CPU is counted once, in the
 * parent's cutime, not missed or counted twice by a reap between two reads.
 * For a listener that forks per session (the peers): sluice's children are
 * its workers, which stay.
 */
export async function settle(pid: number, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end && descendants(pid).length > 0; ) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Peak resident memory of a server's tree while `fn` runs: the larger of
 * samples every 50 ms (forked children come and go) and the sum of the VmHWM
 * of the processes alive at the end (the listener, sluice's workers), each
 * reset first through clear_refs (root, Linux ≥ 4.0), which catches peaks
 * between samples. With several long-lived processes that sum is an upper
 * bound: their peaks need not coincide.
 */
export async function peakRssDuring<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; peakMiB: number }> {
  for (const p of [pid, ...descendants(pid)]) {
    try {
      resetPeak(p);
    } catch {
      // another user's process, or gone: the samples alone give the peak
    }
  }
  let peak = treeRssMiB(pid);
  const timer = setInterval(() => (peak = Math.max(peak, treeRssMiB(pid))), 50);
  try {
    const result = await fn();
    const hwm = [pid, ...descendants(pid)].reduce((s, p) => s + statusKiB(p, 'VmHWM'), 0) / 1024;
    peak = Math.max(peak, treeRssMiB(pid), hwm);
    return { result, peakMiB: peak };
  } finally {
    clearInterval(timer);
  }
}

function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}
