/**
 * #14's aggregate: four clients at once, each a process of its own moving a
 * file of its own: OpenSSH sftp downloads (aes128-gcm) compared with OpenSSH,
 * curl explicit-FTPS uploads compared with vsftpd, on a sluice with one worker
 * and on one with a worker per core. The figure is all the bytes over the wall
 * time from the first client's start to the last one's end; every file is
 * checked by size and SHA-256.
 */
import { copyFile, link, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { curlBase, ftpUrl, runClient, sftpBatch, type ClientRun } from '../clients.js';
import { makeRandomFile, remote, verifyFile } from '../files.js';
import { atLeast, endpointOf, type BenchContext, type Endpoint, type Goal, type PeerName, type Protocol, type SluiceOptions, type Workload } from '../workload.js';

const MiB = 1024 * 1024;
const STREAMS = 4;
const TIMEOUT = 30 * 60_000;

const ONE = 'sluice workers 1';
const AUTO = 'sluice workers auto';
// The environment rather than the config file: a build without workers ignores the variable
// (both rows are then one process) where its config loader would refuse the key.
const SLUICES: SluiceOptions[] = [
  { name: ONE, env: { SLUICE_WORKERS: '1' } },
  { name: AUTO, env: { SLUICE_WORKERS: 'auto' } },
];

/** Bytes each client moves: --size; with --quick a quarter (64 MiB), for the quick run's three minutes. */
const streamSize = (ctx: BenchContext) => (ctx.quick ? Math.floor(ctx.size / 4) : ctx.size);

interface Source {
  path: string;
  sha256: string;
}

/** Four random files of streamSize, made once per bench run. */
let sources: Promise<Source[]> | null = null;
function sourcesOf(ctx: BenchContext): Promise<Source[]> {
  sources ??= (async () => {
    const size = streamSize(ctx);
    ctx.log(`  making ${STREAMS} × ${(size / MiB).toFixed(0)} MiB of random data`);
    const made: Source[] = [];
    for (let i = 0; i < STREAMS; i++) {
      const path = join(ctx.work, `aggregate-source-${i}.bin`);
      made.push({ path, sha256: await makeRandomFile(path, size) });
    }
    return made;
  })();
  return sources;
}

const storedName = (i: number) => `aggregate-${i}.bin`;

/** One client's transfer of stream `i`: where its bytes land, for the check. */
type Stream = (ctx: BenchContext, ep: Endpoint, source: Source, i: number, name: string) => { run: Promise<ClientRun>; landed: string };

const sftpGet: Stream = (ctx, ep, _source, i, name) => {
  const local = join(ctx.work, name);
  return { run: sftpBatch(ctx, ep, [`get ${remote(ep.remoteDir, storedName(i))} ${local}`], TIMEOUT), landed: local };
};

const ftpsPut: Stream = (ctx, ep, source, _i, name) => ({
  run: runClient(ctx.curl, [...curlBase(ep, true), '-T', source.path, ftpUrl(ep, remote(ep.remoteDir, name))], TIMEOUT),
  landed: join(ep.localDir, name),
});

function aggregate(protocol: Protocol, direction: 'get' | 'put', peer: PeerName, peerName: string, min: number, stream: Stream, how: string): Workload {
  const goals: Goal[] = [
    atLeast(min, 'MB/s', ONE, peerName),
    atLeast(min, 'MB/s', AUTO, peerName),
    atLeast(1.2, 'MB/s', AUTO, ONE),
  ];
  return {
    name: `aggregate-${protocol}-${direction}`,
    group: 'aggregate',
    title: `${protocol === 'ftps' ? 'FTPS explicit' : protocol.toUpperCase()} ${direction}, ${STREAMS} clients at once, a large file each (${how}): aggregate`,
    protocol,
    peer,
    unit: 'MB/s',
    quick: true,
    auditOff: false,
    sluices: SLUICES,
    concurrent: true,
    goals,
    async prepare(target, ctx) {
      if (direction !== 'get') return;
      const dir = endpointOf(target, protocol).localDir;
      for (const [i, s] of (await sourcesOf(ctx)).entries()) {
        const stored = join(dir, storedName(i));
        // A link where it can be: each stream still reads a file of its own.
        await link(s.path, stored).catch(() => copyFile(s.path, stored));
      }
    },
    async run(target, ctx) {
      const ep = endpointOf(target, protocol);
      const srcs = await sourcesOf(ctx);
      const names = srcs.map(() => ctx.fresh('aggregate'));
      const start = performance.now();
      const streams = srcs.map((s, i) => stream(ctx, ep, s, i, names[i] as string));
      // Every client ends before the run does, even when one fails: none may run into the next measurement.
      const ended = await Promise.allSettled(streams.map((s) => s.run));
      const seconds = (performance.now() - start) / 1000;
      const size = streamSize(ctx);
      try {
        const each = ended.map((e) => {
          if (e.status === 'rejected') throw e.reason;
          return e.value.seconds;
        });
        await Promise.all(streams.map((s, i) => verifyFile(s.landed, size, (srcs[i] as Source).sha256, `${target.name} aggregate ${protocol} ${direction} client ${i + 1}`)));
        return {
          seconds,
          bytes: STREAMS * size,
          extra: { 'slowest client MB/s': size / 1e6 / Math.max(...each), 'fastest client MB/s': size / 1e6 / Math.min(...each) },
        };
      } finally {
        await Promise.all(streams.map((s) => rm(s.landed, { force: true })));
      }
    },
    async cleanup(target) {
      if (direction !== 'get') return;
      const dir = endpointOf(target, protocol).localDir;
      await Promise.all(Array.from({ length: STREAMS }, (_, i) => rm(join(dir, storedName(i)), { force: true })));
    },
  };
}

export const aggregateWorkloads: Workload[] = [
  aggregate('sftp', 'get', 'openssh', 'OpenSSH', 1.0, sftpGet, 'OpenSSH sftp, aes128-gcm'),
  aggregate('ftps', 'put', 'vsftpd', 'vsftpd', 1.5, ftpsPut, 'curl'),
];
