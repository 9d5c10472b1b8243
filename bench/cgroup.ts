/**
 * CPU of a server and of every process it ever forked, through a cgroup of
 * its own (cgroup v1 cpuacct, or v2): the kernel charges each process's time
 * to the cgroup as it runs, so a per-connection child that exits without
 * being waited for (its time then never reaches the listener's cutime) still
 * counts, and so do sluice's cluster workers. Only the accounting hierarchy
 * is used; scheduling is unchanged.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onCleanup } from './cleanup.js';
import { descendants } from './procfs.js';

const V1 = '/sys/fs/cgroup/cpuacct';
const V2 = '/sys/fs/cgroup';
let made = 0;

/** Moves `pid` into a new cgroup and returns its CPU seconds so far, or null where that cannot be done (not root, no cgroup fs). */
export function cpuCgroup(name: string, pid: number): (() => number) | null {
  const v1 = existsSync(join(V1, 'cpuacct.usage'));
  const v2 = !v1 && existsSync(join(V2, 'cgroup.controllers'));
  if (!v1 && !v2) return null;
  const dir = join(v1 ? V1 : V2, `sluice-bench-${process.pid}-${++made}-${name.replace(/[^a-z0-9]+/gi, '-')}`);
  try {
    mkdirSync(dir);
  } catch {
    return null;
  }
  // Registered before the caller registers the server's stop, so it runs after it: an rmdir needs the cgroup empty.
  onCleanup(async () => {
    // The last children may take a moment to leave after the server's stop.
    for (let i = 0; ; i++) {
      try {
        rmdirSync(dir);
        return;
      } catch (err) {
        if (i === 20) throw new Error(`could not remove ${dir}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  try {
    // The server first: what it forks from now on starts in the cgroup. Then what it forked
    // before (sluice's cluster workers, forked before it reports itself started): a move
    // takes one process, not its children.
    writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  } catch {
    return null;
  }
  for (const child of descendants(pid)) {
    try {
      writeFileSync(join(dir, 'cgroup.procs'), String(child));
    } catch {
      // exited since the listing (the server could be moved, so this one could have been)
    }
  }
  return v1
    ? () => Number(readFileSync(join(dir, 'cpuacct.usage'), 'utf8')) / 1e9
    : () => Number(/usage_usec (\d+)/.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'))?.[1]) / 1e6;
}
