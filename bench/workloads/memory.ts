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
      const warm = ctx.fresh('mem-warm');
      const warmLocal = join(ctx.work, warm);
      await sparse(warmLocal, 100 * MiB);
      await sparse(join(ep.localDir, `${warm}.src`), 100 * MiB);
      for (const direction of ['put', 'get'] as const) {
        const { runs, missed } = await onEveryWorker(target.pid, () =>
          direction === 'put' ? client(ctx, ep, 'put', warmLocal, remote(ep.remoteDir, warm)) : client(ctx, ep, 'get', remote(ep.remoteDir, `${warm}.src`), `${warmLocal}.got`),
        );
        extra[`warm-up ${direction}s`] = runs;
        if (missed > 0) extra[`workers without a warm-up ${direction}`] = missed;
      }
      await Promise.all([warmLocal, `${warmLocal}.got`, join(ep.localDir, warm), join(ep.localDir, `${warm}.src`)].map((p) => rm(p, { force: true })));
      const start = Date.now();
      for (const size of sizes(ctx)) {
        const name = ctx.fresh('mem');
        const local = join(ctx.work, name);
        await sparse(local, size);
        await sparse(join(ep.localDir, `${name}.src`), size);
        const what = `${target.name} ${protocol} ${label(size)}`;
        const { peakMiB } = await peakRssDuring(target.pid, async () => {
          await client(ctx, ep, 'put', local, remote(ep.remoteDir, name));
          await expectSize(join(ep.localDir, name), size, `${what} put`);
          await client(ctx, ep, 'get', remote(ep.remoteDir, `${name}.src`), `${local}.got`);
          await expectSize(`${local}.got`, size, `${what} get`);
        });
        await Promise.all([local, `${local}.got`, join(ep.localDir, name), join(ep.localDir, `${name}.src`)].map((p) => rm(p, { force: true })));
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
