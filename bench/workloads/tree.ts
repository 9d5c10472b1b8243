/**
 * The small-file workloads' common frame: upload the bench's tree of N × 4 KiB
 * files into a fresh remote directory, upload it over files of the same
 * names (a site uploaded again), or download a copy placed on the server's
 * disk, then compare every file byte for byte. The client is the only part
 * that differs.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { onCleanup } from '../cleanup.js';
import { place, placeStale, remote, SMALL_FILE_BYTES, verifyTree } from '../files.js';
import { endpointOf, type BenchContext, type Endpoint, type Goal, type Measurement, type PeerName, type Protocol, type Workload } from '../workload.js';

/** Seconds of the client's run, and each file's time when the client tells it. */
export interface TreeRun {
  seconds: number;
  perFile?: number[];
}

/**
 * Copies the tree at `from` to `to`: local to remote path (put: a new directory; overwrite: one
 * holding files of the same names), or remote path to a local path that does not exist yet (get).
 */
export type TreeClient = (ctx: BenchContext, ep: Endpoint, from: string, to: string, timeoutMs: number) => Promise<TreeRun>;

export interface TreeSpec {
  name: string;
  group: string;
  title: string;
  protocol: Protocol;
  peer: PeerName;
  quick: boolean;
  auditOff: boolean;
  goals: Goal[];
  direction: 'put' | 'overwrite' | 'get';
  client: TreeClient;
}

function measurement(files: number, r: TreeRun): Measurement {
  const m: Measurement = { seconds: r.seconds, files, bytes: files * SMALL_FILE_BYTES };
  if (r.perFile) {
    const sorted = [...r.perFile].sort((a, b) => a - b);
    m.maxGapMs = (sorted.at(-1) ?? 0) * 1000;
    m.extra = { 'median ms per file': (sorted[Math.floor(sorted.length / 2)] ?? 0) * 1000 };
  }
  return m;
}

export function treeWorkload(spec: TreeSpec): Workload {
  const { direction, client, protocol } = spec;
  const down = `${spec.group}-down`;
  const over = `${spec.group}-over`;
  return {
    name: spec.name,
    group: spec.group,
    title: spec.title,
    protocol,
    peer: spec.peer,
    unit: 'files/s',
    quick: spec.quick,
    auditOff: spec.auditOff,
    goals: spec.goals,
    async prepare(target, ctx) {
      if (direction === 'get') await place(await ctx.smallTree(), join(endpointOf(target, protocol).localDir, down));
    },
    async run(target, ctx) {
      const ep = endpointOf(target, protocol);
      const src = await ctx.smallTree();
      const what = `${target.name} ${spec.name}`;
      // Generous: the peers need about a millisecond a file; a 1 s stall on every third file still finishes.
      const timeout = Math.max(60_000, ctx.files * 500);
      const upload = (dir: string) => [src, remote(ep.remoteDir, dir), join(ep.localDir, dir)] as const;
      const [from, to, landed] =
        direction === 'put' ? upload(ctx.fresh('up'))
        : direction === 'overwrite' ? upload(over)
        : ((out) => [remote(ep.remoteDir, down), out, out] as const)(join(ctx.work, ctx.fresh('got')));
      // Other bytes under every name before each run, so that the check below sees the upload's.
      if (direction === 'overwrite') await placeStale(src, landed);
      const r = await client(ctx, ep, from, to, timeout);
      await verifyTree(src, landed, what);
      // Removed when the bench ends, not now: on ext4 without a journal (this bench's VMs) every file
      // created in the next few minutes would scan past the inodes deleted here (ext4's
      // recently_deleted check), so each run, of either server, paid for the runs before it.
      if (direction !== 'overwrite') onCleanup(() => rm(landed, { recursive: true, force: true }));
      return measurement(ctx.files, r);
    },
    async cleanup(target) {
      const { localDir } = endpointOf(target, protocol);
      if (direction === 'get') await rm(join(localDir, down), { recursive: true, force: true });
      if (direction === 'overwrite') await rm(join(localDir, over), { recursive: true, force: true });
    },
  };
}
