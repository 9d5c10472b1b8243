/**
 * `npm run bench`: every workload of issues #13 and #14 against sluice
 * (default config, audit on, or the sluices a workload names, such as one
 * worker and a worker per core), its peer (vsftpd or OpenSSH, started here on
 * loopback) and, where cheap, sluice with the audit off; one table, one line
 * per goal.
 *
 * Per group of workloads (e.g. ftp-small: put and get): place the sources,
 * one warm-up run per server, then the measured runs round robin, the order of
 * servers and of directions reversed every other run, so that drift in the
 * machine's speed spreads over all of them; medians.
 *
 * Exit status: 0 when every transfer arrived whole (goals not met are
 * reported, not failures), 1 when one did not or a run failed, 2 on a wrong
 * command line.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLS_CERT, TLS_KEY } from '../src/certs/names.js';
import { cleanupAll, isInterrupted, onCleanup } from './cleanup.js';
import { curlWarning } from './clients.js';
import { makeRandomFile, makeSmallTree } from './files.js';
import { parseOptions } from './options.js';
import { startOpenSsh, startVsftpd } from './peers.js';
import { onEveryWorker, peakRssDuring, settle } from './procfs.js';
import { printGoals, printTable, valueOf, type Cell } from './report.js';
import { startSluice } from './sluice.js';
import { allWorkloads } from './workloads/index.js';
import { AUDIT_OFF, fmt, SLUICE, type BenchContext, type PeerName, type Target, type Workload } from './workload.js';

const MiB = 1024 * 1024;

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | null = null;
  return () => (p ??= fn());
}

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s since start`;

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2), allWorkloads);
  const work = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  onCleanup(() => rmSync(work, { recursive: true, force: true }));
  const key = join(work, 'id_ed25519');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const curl = process.env.SLUICE_BENCH_CURL || 'curl';
  let counter = 0;
  const ctx: BenchContext = {
    work,
    sshKey: key,
    curl,
    size: opts.size,
    files: opts.files,
    quick: opts.quick,
    bigFile: once(async () => {
      const path = join(work, 'large-source.bin');
      console.log(`  making ${(opts.size / MiB).toFixed(0)} MiB of random data`);
      return { path, sha256: await makeRandomFile(path, opts.size) };
    }),
    smallTree: once(async () => {
      const dir = join(work, 'small-source');
      await makeSmallTree(dir, opts.files);
      return dir;
    }),
    fresh: (prefix) => `${prefix}-${++counter}`,
    startSluice: (options) => startSluice(options, `${key}.pub`),
    log: (line) => console.log(line),
  };

  console.log(
    `sluice bench: ${opts.workloads.length} workloads, large file ${(opts.size / MiB).toFixed(0)} MiB, ${opts.files} small files of 4 KiB, ` +
      `${opts.runs ?? 3} run(s) after one warm-up; ${availableParallelism()} × ${cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}, loopback`,
  );
  const warning = opts.workloads.some((w) => w.protocol !== 'sftp') ? curlWarning(curl) : null;
  if (warning) console.log(warning);

  const sluice = await startSluice({ name: SLUICE }, `${key}.pub`);
  const targets: Target[] = [sluice];
  // --quick leaves out the audit-off rows: a third fewer runs, and they answer a question (the audit's cost) the full run is for.
  const auditOff = !opts.quick && opts.workloads.some((w) => w.auditOff);
  if (auditOff) {
    targets.push(await startSluice({ name: AUDIT_OFF, config: { audit: { enabled: false } } }, `${key}.pub`));
  }
  // The sluices that workloads ask for by name (e.g. one worker, a worker per core), one of each.
  const peers = new Map<PeerName, Target>();
  const skipped = new Map<string, string>();
  const variants = new Map<string, Target>();
  for (const options of opts.workloads.flatMap((w) => w.sluices ?? [])) {
    if (variants.has(options.name) || skipped.has(options.name)) continue;
    // One that cannot start here (a PostgreSQL store without PostgreSQL) leaves its rows out, not the bench.
    try {
      variants.set(options.name, await startSluice(options, `${key}.pub`));
    } catch (err) {
      if (isInterrupted()) throw err;
      skipped.set(options.name, (err as Error).message);
    }
  }
  const wanted = new Set(opts.workloads.flatMap((w) => (w.peer ? [w.peer] : [])));
  if (wanted.has('openssh')) {
    const t = await startOpenSsh(work, readFileSync(`${key}.pub`, 'utf8'));
    if (typeof t === 'string') skipped.set('openssh', t);
    else peers.set('openssh', t);
  }
  if (wanted.has('vsftpd')) {
    const t = await startVsftpd(work, join(sluice.certsDir, TLS_CERT), join(sluice.certsDir, TLS_KEY));
    if (typeof t === 'string') skipped.set('vsftpd', t);
    else peers.set('vsftpd', t);
  }
  for (const [peer, why] of skipped) console.log(`skipped ${peer}: ${why}`);

  const targetsOf = (w: Workload) => [
    ...(w.sluices ? w.sluices.flatMap((o) => variants.get(o.name) ?? []) : [sluice, ...targets.filter((t) => t !== sluice && w.auditOff)]),
    ...(w.peer && peers.has(w.peer) ? [peers.get(w.peer) as Target] : []),
  ].filter((t) => t.endpoints[w.protocol]);

  const rows = opts.workloads.map((w) => ({ w, cells: targetsOf(w).map((target): Cell => ({ target, samples: [], error: null })) }));
  const fail = (w: Workload, cell: Cell, err: unknown) => {
    cell.error ??= (err as Error).message;
    console.log(`  FAILED ${w.name} on ${cell.target.name}: ${(err as Error).message}`);
  };

  const measure = async (w: Workload, cell: Cell) => {
    const t = cell.target;
    // No dirty pages left by the run before, and the peers' children of the run before reaped.
    spawnSync('sync');
    const reaped = () => (t.kind === 'sluice' ? Promise.resolve() : settle(t.pid));
    await reaped();
    const before = t.usage();
    const { result, peakMiB } = await peakRssDuring(t.pid, () => w.run(t, ctx));
    await reaped();
    const after = t.usage();
    cell.samples.push({
      m: result,
      cpuSeconds: after.cpuSeconds - before.cpuSeconds,
      loopCpuSeconds: after.loopCpuSeconds !== null && before.loopCpuSeconds !== null ? after.loopCpuSeconds - before.loopCpuSeconds : null,
      peakRssMiB: peakMiB,
    });
    console.log(`  ${w.name.padEnd(18)} ${t.name.padEnd(18)} ${fmt(valueOf(w, result)).padStart(8)} ${w.unit}`);
  };

  for (const group of [...new Set(opts.workloads.map((w) => w.group))]) {
    const members = rows.filter((r) => r.w.group === group);
    console.log(`${group}:`);
    const each = async (fn: (w: Workload, cell: Cell) => Promise<void>, reverse = false) => {
      const ws = reverse ? [...members].reverse() : members;
      for (const { w, cells } of ws) {
        for (const cell of reverse ? [...cells].reverse() : cells) {
          if (cell.error || isInterrupted()) continue;
          try {
            await fn(w, cell);
          } catch (err) {
            fail(w, cell, err);
          }
        }
      }
    };
    await each(async (w, cell) => w.prepare?.(cell.target, ctx));
    await each(async (w, cell) => {
      if (w.noWarmUp) return;
      const { target } = cell;
      // A worker that has not served the workload yet runs it cold (V8 compiles its code as it goes):
      // each is warmed, not only the one that took the warm-up's connection. A peer forks per connection.
      if (w.concurrent || target.kind !== 'sluice') await w.run(target, ctx);
      else await onEveryWorker(target.pid, () => w.run(target, ctx));
    });
    const runsOf = (w: Workload) => opts.runs ?? w.runs ?? 3;
    const most = Math.max(...members.map((r) => runsOf(r.w)));
    for (let run = 1; run <= most; run++) {
      await each(async (w, cell) => {
        if (run <= runsOf(w)) await measure(w, cell);
      }, run % 2 === 0);
      console.log(`  run ${run}/${most} done, ${elapsed()}`);
    }
    await each(async (w, cell) => w.cleanup?.(cell.target, ctx));
  }

  printTable(rows);
  const notMet = printGoals(rows, skipped);
  for (const [peer, why] of skipped) console.log(`skipped ${peer}: ${why}`);
  if (warning) console.log(warning);
  const failed = rows.flatMap(({ w, cells }) => cells.filter((c) => c.error).map((c) => `${w.name} on ${c.target.name}: ${c.error}`));
  console.log(`\n${notMet} goal(s) not met; ${elapsed()}.`);
  if (failed.length > 0) {
    console.log(`FAILED (${failed.length}):`);
    for (const f of failed) console.log(`  ${f}`);
    return 1;
  }
  return 0;
}

// An error outside main's promise chain (an 'error' event nobody listens to) would otherwise
// end the bench with its servers still running and its cgroups, PAM file and temp dirs left.
process.on('uncaughtException', (err) => {
  console.error(`bench failed: ${err.stack ?? String(err)}`);
  void cleanupAll().finally(() => process.exit(1));
});

main()
  .then(async (code) => {
    await cleanupAll();
    process.exit(code);
  })
  .catch(async (err: unknown) => {
    if (!isInterrupted()) console.error(`bench failed: ${(err as Error).stack ?? String(err)}`);
    await cleanupAll();
    process.exit(1);
  });
