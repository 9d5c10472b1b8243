/**
 * Preloaded into the server under test (NODE_OPTIONS='--import <this file>'),
 * so the bench measures sluice from inside without any product code: on
 * SIGUSR2 it writes the event loop's delay since the last SIGUSR2 and the
 * process's memory to $SLUICE_BENCH_PROBE.<pid> (JSON), then starts a new
 * interval. Cluster workers inherit NODE_OPTIONS, so each of sluice's
 * processes loads it and answers for itself.
 * With $SLUICE_BENCH_HEAP set, each SIGUSR2 also writes a heap snapshot there;
 * with $SLUICE_BENCH_CPUPROF, a CPU profile of the event-loop thread since the
 * previous SIGUSR2 (Node refuses --cpu-prof in NODE_OPTIONS). A worker adds
 * .<pid> to both paths.
 * Inactive (nothing loaded, no handler) in processes without $SLUICE_BENCH_PROBE.
 */
import cluster from 'node:cluster';
import { openSync, readSync, writeFileSync, renameSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';

const probe = process.env.SLUICE_BENCH_PROBE;
if (probe) {
  const out = `${probe}.${process.pid}`;
  const own = (path) => (path && cluster.isWorker ? `${path}.${process.pid}` : path);
  // 1 ms sampling: a block of 20 ms (the goal's bound) cannot hide between two samples.
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const stretches = onCpuStretches();
  let since = Date.now();
  const cpuprof = own(process.env.SLUICE_BENCH_CPUPROF);
  const inspector = cpuprof ? new Session() : null;
  if (inspector) {
    inspector.connect();
    inspector.post('Profiler.enable', () => inspector.post('Profiler.start'));
  }
  process.on('SIGUSR2', () => {
    if (inspector) {
      inspector.post('Profiler.stop', (err, result) => {
        if (!err) writeFileSync(cpuprof, JSON.stringify(result.profile));
        inspector.post('Profiler.start');
      });
    }
    const ms = (ns) => ns / 1e6;
    const report = {
      pid: process.pid,
      seconds: (Date.now() - since) / 1000,
      delay: { max: ms(delay.max), p99: ms(delay.percentile(99)), mean: ms(delay.mean), count: delay.count },
      stretches: stretches?.take() ?? null,
      memory: process.memoryUsage(),
      heap: process.env.SLUICE_BENCH_HEAP ? writeHeapSnapshot(own(process.env.SLUICE_BENCH_HEAP)) : null,
    };
    delay.reset();
    since = Date.now();
    // Written whole, then renamed: the bench never reads half a report.
    writeFileSync(`${out}.tmp`, JSON.stringify(report));
    renameSync(`${out}.tmp`, out);
  });
}

/**
 * A late event loop is either running (code that does not yield: what the
 * goal forbids) or waiting for a core the kernel gave to another process (on
 * a 2-core machine, the clients'). The kernel's per-thread schedstat tells
 * the two apart: a 1 ms timer reads the loop thread's time on a CPU and in
 * the run queue at each tick. `maxOnCpu`: the longest time the thread ran
 * between two ticks (the longest block); `longest`: the longest gap between
 * two ticks, split into running and waiting. Null where /proc has no
 * schedstat. Each read is one pread, a few microseconds of the loop's time.
 */
function onCpuStretches() {
  let fd;
  try {
    fd = openSync(`/proc/self/task/${process.pid}/schedstat`, 'r');
  } catch {
    return null;
  }
  // Kept open and read from its start each time: one system call a tick.
  const buf = Buffer.alloc(128);
  const read = () => {
    const [run, wait] = buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0)).split(' ').map(Number);
    return { at: performance.now(), run: run / 1e6, wait: wait / 1e6 };
  };
  let last = read();
  let maxOnCpu = 0;
  let longest = { ms: 0, onCpuMs: 0, waitingMs: 0 };
  setInterval(() => {
    const now = read();
    const onCpu = now.run - last.run;
    const gap = now.at - last.at;
    if (onCpu > maxOnCpu) maxOnCpu = onCpu;
    if (gap > longest.ms) longest = { ms: gap, onCpuMs: onCpu, waitingMs: now.wait - last.wait };
    last = now;
  }, 1).unref();
  return {
    take() {
      const taken = { maxOnCpuMs: maxOnCpu, longest };
      maxOnCpu = 0;
      longest = { ms: 0, onCpuMs: 0, waitingMs: 0 };
      return taken;
    },
  };
}
