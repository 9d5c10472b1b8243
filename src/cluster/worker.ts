import cluster from 'node:cluster';
import { openAdmin } from '../admin-services.js';
import { servicesOn } from '../app.js';
import type { Config } from '../config/schema.js';
import { answerSessions, processChannel, RemoteCoordinator, type Channel } from '../coordinator/ipc-client.js';
import type { WorkerMessage } from '../coordinator/ipc-messages.js';
import { drainFrontEnds, startFrontEnds, type FrontEnd } from '../front-ends.js';
import { startFailed } from '../listening.js';
import { sampleProcess } from '../metrics/sampler.js';
import { inPlaceFence } from '../session/fence.js';
import type { DrainCounts } from '../session/live.js';
import { SqliteStore } from '../store/sqlite/store.js';
import { answerPings } from './watchdog.js';

/**
 * A worker: every front-end on the listening ports the primary shares, its
 * own sessions, its own handle on the store; the shared state is the
 * primary's (RemoteCoordinator). It stops when the primary says so. When the
 * primary is gone, Node's cluster module ends the worker at once (its own
 * 'disconnect' listener, which runs before any of ours, calls process.exit):
 * the primary wrote the audit trail, so nothing of its sessions' ends could
 * be recorded anyway (SECURITY.md, What a crash loses).
 */
export async function serveAsWorker(config: Config): Promise<number> {
  // Signals are the primary's to act on: a Ctrl-C reaches the whole process
  // group, and the primary then tells each worker to stop.
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => undefined);
  let drained: DrainCounts | undefined;
  try {
    const served = await serveUntilStopped(config);
    drained = served.drained;
    return served.code;
  } finally {
    // The sessions' last audit records are queued on the channel: close it once
    // they are written; the open channel is all that would keep this process.
    const last: WorkerMessage = drained ? { t: 'stopped', drained } : { t: 'stopped' };
    if (process.connected) await new Promise<void>((resolve) => process.send?.(last, undefined, {}, () => resolve()));
    if (process.connected) process.disconnect();
  }
}

async function serveUntilStopped(config: Config): Promise<{ code: number; drained?: DrainCounts }> {
  const channel = processChannel();
  // The primary runs the hooks on the events it is sent: sent whenever either needs them.
  const coordinator = new RemoteCoordinator(channel, config.audit.enabled || config.hooks.actions.length > 0);
  try {
    return await serveWithCoordinator(config, channel, coordinator);
  } finally {
    // What still waits to be said goes before the worker's `stopped`.
    coordinator.flushNow();
  }
}

async function serveWithCoordinator(config: Config, channel: Channel, coordinator: RemoteCoordinator): Promise<{ code: number; drained?: DrainCounts }> {
  const base = await openAdmin(config);
  // The primary's thread checkpoints (Checkpointer): this worker's commits only if it cannot.
  if (base.store instanceof SqliteStore) base.store.serve();
  const services = servicesOn(base, coordinator, coordinator, cluster.worker?.id ?? 0);
  let hurry: () => void = () => undefined;
  const hurried = new Promise<void>((resolve) => (hurry = resolve));
  const stop = new Promise<void>((resolve) => {
    channel.onMessage((m) => {
      if (m.t !== 'stop') return;
      resolve();
      if (m.now) hurry();
    });
  });
  answerPings(channel);
  // Several nodes: the primary's in-place fence, from before this worker listens (see InPlaceFence).
  channel.onMessage((m) => m.t === 'fence' && inPlaceFence.adopt(m));
  channel.onMessage((m) => {
    if (m.t !== 'sessions') return;
    // A question that fails goes unanswered: the primary stops waiting for this worker's answer (SESSIONS_ANSWER_MS).
    answerSessions(services.live, m).then(
      (value) => channel.send({ t: 'sessions-answer', id: m.id, value }),
      (err: unknown) => base.log.error({ err, op: m.op }, 'answering the primary about the sessions'),
    );
  });
  // Asked before listening: a worker started again while the server stops must not open the ports again.
  // Before (found by a review), one that got ready during the drain reopened them, the others closed, until
  // it was told to stop on its ready.
  const go = await new Promise<boolean>((resolve) => {
    channel.onMessage((m) => (m.t === 'start' || m.t === 'stop') && resolve(m.t === 'start'));
    channel.send({ t: 'starting' });
  });
  if (!go) {
    await base.close();
    return { code: 0 };
  }
  let running: FrontEnd[];
  try {
    running = await startFrontEnds(services);
  } catch (err) {
    startFailed(base.log, err, 'worker could not start');
    await base.close();
    return { code: 1 };
  }
  channel.onMessage((m) => m.t === 'reload' && running.forEach((fe) => fe.reload?.()));
  channel.send({ t: 'ready', frontEnds: running.map((fe) => fe.name), listeners: running.flatMap((fe) => fe.listeners) });
  // The primary labels this worker's samples with its id; not ordered with anything else, so sent at once.
  // None with the admin API off: the primary keeps no metrics then (see openCoordination), nothing reads them.
  const stopSampling = config.admin.listen === '' ? () => undefined : sampleProcess((sample) => channel.send({ t: 'process-sample', sample }));
  await stop;
  stopSampling();
  const drained = await drainFrontEnds(running, services.live, config.shutdown.drainTimeout, hurried);
  await base.close();
  return { code: 0, drained };
}
