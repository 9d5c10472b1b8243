import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Coordination } from '../app.js';
import { WorkerLink } from '../coordinator/ipc-server.js';
import { isMessage, type PrimaryMessage, type WorkerMessage } from '../coordinator/ipc-messages.js';
import { reopenTrail, type HangUps } from '../hang-up.js';
import { StartRefused, startFailed, type Listening } from '../listening.js';
import { inPlaceFence } from '../session/fence.js';
import { drainSummary, type DrainCounts } from '../session/live.js';
import { adminServesTls, logStarted, warnExposedKeys } from '../started.js';
import { nextStopSignal } from '../stop-signal.js';
import { allocatorEnv, workerExecArgv } from './allocator.js';
import { POOL_TIMEOUTS, watchWorker, type Hang } from './watchdog.js';

/**
 * A worker that has not stopped this long after its drain's deadline (see
 * shutdown.drainTimeout) is killed: time to end what is left and send the last records.
 */
const STOP_MARGIN_MS = 10_000;
/** A worker that dies is started again after this long, so a worker that cannot run does not spin. */
const RESTART_DELAY_MS = 1000;

/**
 * The primary: `count` workers serve, this process keeps the shared state
 * (coordination) and answers their questions. It parses no protocol, opens no
 * file of a user, and holds no session: the listening sockets are shared with
 * the workers by the cluster module, which hands each connection to one of
 * them. A worker that dies is started again; what it held is given back and
 * its unfinished uploads are recorded as aborted (WorkerLink.workerGone).
 */
export async function superviseWorkers(
  count: number,
  settings: {
    readonly dataDir: string;
    readonly certsDir: string;
    readonly shutdown: { readonly drainTimeout: number };
    readonly admin: { readonly listen: string; readonly tls: boolean };
    /** Seconds a worker's event loop may answer no ping (its pool: POOL_TIMEOUTS times) before it is ended as hung; 0: never (cluster/watchdog.ts). */
    readonly workerHangTimeout: number;
  },
  coordination: Coordination,
  stopped: Promise<string>,
  hangUps: HangUps,
  log: Logger,
): Promise<number> {
  let frontEnds: string[] = [];
  let listeners: Listening[] = [];
  const links = new Map<Worker, WorkerLink>();
  /** Workers whose front-ends listen: a reload goes to them. */
  const ready = new Set<Worker>();
  /** Workers that said `starting`: they hear `stop` from then on, ready or not. */
  const starting = new Set<Worker>();
  let stopping = false;
  const exited = new Set<Promise<void>>();
  /** Each worker's watch's end: a stopping worker is no longer watched (its stop has its own deadline, STOP_MARGIN_MS). */
  const watches = new Set<() => void>();
  const drained: DrainCounts = { endedIdle: 0, transfersFinished: 0, transfersAborted: 0 };

  const threads = threadsPerWorker(count);
  const hungFor = (hang: Hang): number => settings.workerHangTimeout * (hang === 'pool' ? POOL_TIMEOUTS : 1);
  const allocator = allocatorEnv(process.env);
  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS) });
  const fork = (): Promise<void> => {
    const worker = cluster.fork({ UV_THREADPOOL_SIZE: String(threads), ...allocator });
    const send = (m: PrimaryMessage) => {
      if (worker.isConnected()) worker.send(m);
    };
    const link = new WorkerLink(worker.id, coordination.coordinator, coordination.quotas, send);
    let unwatch = (): void => undefined;
    /** Watched once ready (pings before would wait behind its start); ended as hung by the watch, if it was. */
    let watch: ReturnType<typeof watchWorker> | null = null;
    let hung: Hang | null = null;
    const stopWatch = (): void => watch?.stop();
    watches.add(stopWatch);
    links.set(worker, link);
    const leave = coordination.sessions.join(link.sessions);
    worker.on('message', (m: unknown) => {
      if (!isMessage<WorkerMessage>(m)) return;
      if (m.t === 'pong') watch?.answered(m.from);
      if (m.t === 'starting') {
        starting.add(worker);
        // Its in-place writes are fenced as this process's would be (it holds the node lock): told before it listens.
        const fence = inPlaceFence.state();
        if (fence) send({ t: 'fence', ...fence });
        unwatch();
        unwatch = inPlaceFence.watch((state) => send({ t: 'fence', ...state }));
        send(stopping ? { t: 'stop' } : { t: 'start' });
      }
      try {
        link.handle(m);
      } catch (err) {
        // One worker's failed step (a store write refused) must not end the server.
        log.error({ err, worker: worker.id, message: m.t }, 'worker message failed');
      }
    });
    // A worker's IPC channel failing must not take the primary down; its exit follows.
    worker.on('error', (err) => log.error({ err, worker: worker.id }, 'worker channel'));
    // What the worker sent before it died is read before its holdings are given back: an
    // upload recorded at the last moment is not also recorded aborted.
    const disconnected = new Promise((resolve) => worker.once('disconnect', resolve));
    const died = new Promise<[number, string | null]>((resolve) => worker.once('exit', (code, signal) => resolve([code, signal])));
    const exit = Promise.all([died, disconnected]).then(([[code, signal]]) => {
      const wasReady = ready.has(worker);
      links.delete(worker);
      ready.delete(worker);
      starting.delete(worker);
      coordination.serving.stopped(worker.id);
      leave();
      unwatch();
      stopWatch();
      watches.delete(stopWatch);
      if (link.drained) addTo(drained, link.drained);
      const why = hung
        ? `worker process hung (${hung === 'loop' ? 'no answer' : 'its thread pool ran nothing'} for ${hungFor(hung)} s): ended by ${signal ?? 'SIGKILL'}`
        : signal
          ? `worker process ended by ${signal}`
          : `worker process exited with code ${code}`;
      link.workerGone(why, coordination.coordinator.audit);
      // One that never got ready failed its start, which says so (and starts no other).
      if (!stopping && wasReady) {
        log.error({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker died: starting another');
        setTimeout(() => {
          // One told to stop before it listened exits unready: no failure.
          if (!stopping) fork().catch((err: unknown) => stopping || log.error({ err }, 'worker restart'));
        }, RESTART_DELAY_MS).unref();
      }
    });
    exited.add(exit);
    void exit.then(() => exited.delete(exit));
    return new Promise<void>((resolve, reject) => {
      const onReady = (m: unknown) => {
        if (isMessage<WorkerMessage>(m) && m.t === 'ready') {
          worker.off('message', onReady);
          ready.add(worker);
          coordination.serving.started(worker.id);
          frontEnds = m.frontEnds;
          listeners = m.listeners;
          log.info({ worker: worker.id, workerPid: worker.process.pid }, 'worker ready');
          if (settings.workerHangTimeout > 0 && !stopping) {
            watch = watchWorker(() => send({ t: 'ping' }), settings.workerHangTimeout * 1000, (hang) => {
              hung = hang;
              log.error({ worker: worker.id, workerPid: worker.process.pid, stuck: hang, seconds: hungFor(hang) }, 'worker hung: ending it');
              worker.process.kill('SIGKILL');
            });
          }
          if (stopping) send({ t: 'stop' });
          resolve();
        }
      };
      worker.on('message', onReady);
      void exit.then(() => reject(new StartRefused(`worker ${worker.id} exited before it was ready (its log line says why)`)));
    });
  };

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const stop of watches) stop();
    coordination.serving.stopping();
    for (const worker of starting) if (worker.isConnected()) worker.send({ t: 'stop' } satisfies PrimaryMessage);
    // One that has not said `starting` holds no session and has not taken its signals over: SIGTERM ends it (one
    // still loading its code, or hung there, would hear no `stop`).
    for (const worker of links.keys()) if (!starting.has(worker)) worker.process.kill('SIGTERM');
    const grace = setTimeout(() => {
      for (const worker of links.keys()) worker.process.kill('SIGKILL');
    }, settings.shutdown.drainTimeout * 1000 + STOP_MARGIN_MS);
    while (exited.size > 0) await Promise.all([...exited]);
    clearTimeout(grace);
  };

  // One worker first, the others once it listens: a start that is refused (a certificate or host key that
  // cannot be used, a port in use) fails in that one worker, not in `count` processes that each load all
  // the protocol code to fail alike (about 0.8 s of CPU each). Starting the others in parallel after it
  // keeps a large server's start to about twice one worker's.
  const starts = (async () => {
    await fork();
    await Promise.all(Array.from({ length: count - 1 }, fork));
  })();
  // A stop asked for during the start is heeded then: a worker that hung in its start (never ready, never
  // exiting) left the server deaf to SIGTERM, only a SIGKILL ending it (found by a review).
  let stoppedEarly: string | null;
  try {
    stoppedEarly = await Promise.race([starts.then(() => null), stopped]);
  } catch (err) {
    startFailed(log, err, 'could not start');
    await stopAll();
    return 1;
  }
  if (stoppedEarly !== null) {
    // The workers the stop ends before they are ready fail the start's promise: no failure now.
    starts.catch(() => undefined);
    log.info({ signal: stoppedEarly, ready: ready.size, workers: count }, 'stopping before every worker was ready');
    await stopAll();
    return 0;
  }
  // With every worker dead and the next not yet started, nothing else would hold the process.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const { dataDir, certsDir } = settings;
  const report = { listeners, frontEnds, dataDir, certsDir, workers: count, adminTls: adminServesTls(settings.admin) };
  // During the drain too: logrotate may move the trail while the last transfers finish.
  hangUps.reloadWith(() => {
    for (const worker of ready) if (worker.isConnected()) worker.send({ t: 'reload' } satisfies PrimaryMessage);
    reopenTrail(coordination, log);
    void warnExposedKeys(log, report);
  });
  await logStarted(log, coordination.started, report);
  const signal = await stopped;
  clearInterval(keepAlive);
  const live = [...links.values()].map((l) => ({ worker: l.worker, ...l.live }));
  log.info({ signal, workers: live }, 'stopping');
  const hurry = nextStopSignal(log);
  void hurry.signalled.then(() => {
    for (const worker of starting) if (worker.isConnected()) worker.send({ t: 'stop', now: true } satisfies PrimaryMessage);
  });
  await stopAll();
  hurry.drained();
  log.info(drained, drainSummary(drained));
  return 0;
}

function addTo(total: DrainCounts, more: DrainCounts): void {
  total.endedIdle += more.endedIdle;
  total.transfersFinished += more.transfersFinished;
  total.transfersAborted += more.transfersAborted;
}

/**
 * Each worker's share of libuv's thread pool (UV_THREADPOOL_SIZE, 16 unless
 * set, see bin.cts), at least 4: the server as a whole keeps the threads one
 * process would have.
 */
function threadsPerWorker(count: number): number {
  const total = Number(process.env.UV_THREADPOOL_SIZE) || 16;
  return Math.max(4, Math.ceil(total / count));
}
