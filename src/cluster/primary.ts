import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Coordination } from '../app.js';
import { WorkerLink } from '../coordinator/ipc-server.js';
import { isWorkerMessage, type PrimaryMessage } from '../coordinator/ipc-messages.js';

/** A worker that has not stopped this long after being told to is killed. */
const STOP_GRACE_MS = 30_000;
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
  dataDir: string,
  coordination: Coordination,
  stopped: Promise<string>,
  log: Logger,
): Promise<number> {
  let frontEnds: string[] = [];
  const links = new Map<Worker, WorkerLink>();
  let stopping = false;
  const exited = new Set<Promise<void>>();

  const fork = (): Promise<void> => {
    const worker = cluster.fork();
    const send = (m: PrimaryMessage) => {
      if (worker.isConnected()) worker.send(m);
    };
    const link = new WorkerLink(worker.id, coordination.coordinator, coordination.quotas, send);
    links.set(worker, link);
    worker.on('message', (m: unknown) => {
      if (isWorkerMessage(m)) link.handle(m);
    });
    // A worker's IPC channel failing must not take the primary down; its exit follows.
    worker.on('error', (err) => log.error({ err, worker: worker.id }, 'worker channel'));
    // What the worker sent before it died is read before its holdings are given back: an
    // upload recorded at the last moment is not also recorded aborted.
    const disconnected = new Promise((resolve) => worker.once('disconnect', resolve));
    const died = new Promise<[number, string | null]>((resolve) => worker.once('exit', (code, signal) => resolve([code, signal])));
    const exit = Promise.all([died, disconnected]).then(([[code, signal]]) => {
      links.delete(worker);
      const why = signal ? `worker process ended by ${signal}` : `worker process exited with code ${code}`;
      link.workerGone(why, coordination.coordinator.audit);
      if (!stopping) {
        log.error({ worker: worker.id, pid: worker.process.pid, code, signal }, 'worker died: starting another');
        setTimeout(() => {
          if (!stopping) fork().catch((err: unknown) => log.error({ err }, 'worker restart'));
        }, RESTART_DELAY_MS).unref();
      }
    });
    exited.add(exit);
    void exit.then(() => exited.delete(exit));
    return new Promise<void>((resolve, reject) => {
      const ready = (m: unknown) => {
        if (isWorkerMessage(m) && m.t === 'ready') {
          worker.off('message', ready);
          frontEnds = m.frontEnds;
          log.info({ worker: worker.id, pid: worker.process.pid }, 'worker ready');
          resolve();
        }
      };
      worker.on('message', ready);
      void exit.then(() => reject(new Error(`worker ${worker.id} exited before it was ready`)));
    });
  };

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const [worker, link] of links) {
      if (worker.isConnected()) worker.send({ t: 'stop' } satisfies PrimaryMessage);
      else link.workerGone('stopping', coordination.coordinator.audit);
    }
    const grace = setTimeout(() => {
      for (const worker of links.keys()) worker.process.kill('SIGKILL');
    }, STOP_GRACE_MS);
    while (exited.size > 0) await Promise.all([...exited]);
    clearTimeout(grace);
  };

  try {
    await Promise.all(Array.from({ length: count }, fork));
  } catch (err) {
    log.fatal({ err }, 'could not start');
    await stopAll();
    return 1;
  }
  const onHangup = () => {
    for (const worker of links.keys()) if (worker.isConnected()) worker.send({ t: 'reload' } satisfies PrimaryMessage);
    coordination.auditLog?.reopen().catch((err: unknown) => log.error({ err }, 'audit log reopen'));
  };
  process.on('SIGHUP', onHangup);
  log.info({ frontEnds, dataDir, workers: count }, 'sluice started');
  const signal = await stopped;
  process.off('SIGHUP', onHangup);
  const live = [...links.values()].map((l) => ({ worker: l.worker, ...l.live }));
  log.info({ signal, workers: live }, 'stopping');
  await stopAll();
  return 0;
}
