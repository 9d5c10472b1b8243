/**
 * sluice's resident memory while it moves a 100 MiB file and while it moves a
 * 4 GiB one (1 GiB with --quick), up and down: with streams and backpressure
 * the peak must not grow with the file. Sparse files of zeros: only the size
 * matters here, and neither side spends disk reading them.
 *
 * Before the two sizes, every worker moves 100 MiB each way: a worker's first
 * transfer grows it once, about 40 MiB (the buffers a transfer is done with
 * wait for V8's next collection, and malloc's arena grows to hold them, then
 * keeps that room for the transfers after it, of any size). Unwarmed, the
 * first size measured was charged for that growth, which says nothing of how
 * memory follows the file's size, the one thing this workload is for.
 */
import { rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { curlBase, ftpUrl, runClient, sftpBatch } from '../clients.js';
import { remote, VerifyError } from '../files.js';
import { onEveryWorker, peakRssDuring } from '../procfs.js';
import { endpointOf, fmt, type BenchContext, type Endpoint, type Workload } from '../workload.js';

const MiB = 1024 * 1024;
const TIMEOUT = 30 * 60_000;

async function sparse(path: string, size: number): Promise<void> {
  await writeFile(path, '');
  await truncate(path, size);
}

async function expectSize(path: string, size: number, what: string): Promise<void> {
  const got = (await stat(path)).size;
  if (got !== size) throw new VerifyError(`${what}: ${got} bytes arrived, ${size} sent`);
}

type Client = (ctx: BenchContext, ep: Endpoint, direction: 'put' | 'get', from: string, to: string) => Promise<unknown>;

const clients: Record<'sftp' | 'ftp', Client> = {
  sftp: (ctx, ep, direction, from, to) => sftpBatch(ctx, ep, [`${direction} ${from} ${to}`], TIMEOUT),
  ftp: (ctx, ep, direction, from, to) =>
    runClient(ctx.curl, [...curlBase(ep, false), ...(direction === 'put' ? ['-T', from, ftpUrl(ep, to)] : ['-o', to, ftpUrl(ep, from)])], TIMEOUT),
};

/** A sparse file of `size` on each side, the client's put and get of them, and their removal. */
async function sparsePair(ctx: BenchContext, ep: Endpoint, client: Client, size: number) {
  const name = ctx.fresh('mem');
  const local = join(ctx.work, name);
  const uploaded = join(ep.localDir, name);
  const source = join(ep.localDir, `${name}.src`);
  await sparse(local, size);
  await sparse(source, size);
  return {
    uploaded,
    downloaded: `${local}.got`,
    put: () => client(ctx, ep, 'put', local, remote(ep.remoteDir, name)),
    get: () => client(ctx, ep, 'get', remote(ep.remoteDir, `${name}.src`), `${local}.got`),
    remove: () => Promise.all([local, `${local}.got`, uploaded, source].map((p) => rm(p, { force: true }))),
  };
}

const sizes = (ctx: BenchContext) => [100 * MiB, (ctx.quick ? 1024 : 4096) * MiB];
const label = (size: number) => (size >= 1024 * MiB ? `${size / 1024 / MiB} GiB` : `${size / MiB} MiB`);

function memory(protocol: 'sftp' | 'ftp'): Workload {
  const client = clients[protocol];
  return {
    name: `memory-${protocol}`,
    group: 'memory',
    title: `${protocol.toUpperCase()} server RSS, peak during 4 GiB (1 GiB --quick) minus peak during 100 MiB, up and down`,
    protocol,
    peer: null,
    unit: 'MiB',
    quick: true,
    auditOff: false,
    runs: 1,
    // Its own warm-up (in run), on every worker rather than on whichever takes one connection.
    noWarmUp: true,
    goals: [
      {
        text: 'server RSS within ± 20 MiB between the two sizes',
        judge: ({ sluice }) => (sluice ? { met: Math.abs(sluice.value) <= 20, figures: `${sluice.value >= 0 ? '+' : ''}${fmt(sluice.value)} MiB` } : null),
      },
    ],
    async run(target, ctx) {
      const ep = endpointOf(target, protocol);
      const extra: Record<string, number> = {};
      const peaks: number[] = [];
      const warm = await sparsePair(ctx, ep, client, 100 * MiB);
      for (const direction of ['put', 'get'] as const) {
        const { runs, missed } = await onEveryWorker(target.pid, () => warm[direction]());
        extra[`warm-up ${direction}s`] = runs;
        if (missed > 0) extra[`workers without a warm-up ${direction}`] = missed;
      }
      await warm.remove();
      const start = Date.now();
      for (const size of sizes(ctx)) {
        const pair = await sparsePair(ctx, ep, client, size);
        const what = `${target.name} ${protocol} ${label(size)}`;
        const { peakMiB } = await peakRssDuring(target.pid, async () => {
          await pair.put();
          await expectSize(pair.uploaded, size, `${what} put`);
          await pair.get();
          await expectSize(pair.downloaded, size, `${what} get`);
        });
        await pair.remove();
        peaks.push(peakMiB);
        extra[`peak during ${label(size)}`] = peakMiB;
        extra[`RSS after ${label(size)}`] = target.usage().rssMiB;
      }
      const bytes = sizes(ctx).reduce((s, x) => s + 2 * x, 0);
      return { seconds: (Date.now() - start) / 1000, bytes, value: (peaks[1] ?? 0) - (peaks[0] ?? 0), extra };
    },
  };
}

export const memoryWorkloads: Workload[] = [memory('sftp'), memory('ftp')];
