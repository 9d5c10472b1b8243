import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { openAdmin, serverFilesOf, type AdminServices } from './admin-services.js';
import { FileNotMade, MAX_UNWRITTEN } from './audit/log-file.js';
import { AuditLog } from './audit/log.js';
import { Authenticator } from './auth/authenticator.js';
import type { Config } from './config/schema.js';
import type { AuditTrail, Coordinator } from './coordinator/coordinator.js';
import { Hooks } from './hooks/runner.js';
import { LocalCoordinator } from './coordinator/local.js';
import type { FailureTally } from './coordinator/shared-state.js';
import { AllSessions, BANNED_BY_ADMIN, endSessionsFrom, endUserSessions } from './coordinator/sessions.js';
import { ServingState } from './metrics/health.js';
import { UNCOUNTED } from './metrics/events.js';
import type { ServerMetrics } from './metrics/registry.js';
import { sampleProcess } from './metrics/sampler.js';
import { BanCheck } from './security/ban-check.js';
import { Defender } from './security/defender.js';
import { FailureThrottle } from './security/failure-throttle.js';
import { MemoryFailureTally } from './security/failure-tally.js';
import { Gate } from './security/gate.js';
import { ClamdScanner } from './scan/clamd.js';
import { loggedQuarantine, loggedScanner } from './scan/logged.js';
import { QuarantineDir } from './scan/quarantine.js';
import { UploadReceipts } from './session/checksum.js';
import { LiveRegistry } from './session/live.js';
import { scansWith, type UploadScanning } from './session/scanning.js';
import { ConnectionBudgets } from './session/connection-budgets.js';
import { DataPlaces } from './session/data-places.js';
import { HandleBook } from './session/open-handles.js';
import { LocalRooms, QuotaBook, type QuotaRooms } from './session/quota.js';
import { ConnectionRegistry } from './session/registry.js';
import type { InFlightTransfers, SessionDeps } from './session/session.js';
import { openLocalStorage } from './session/storage/local.js';
import { WALKS_PER_HOME, WalkTurns } from './session/storage/walk-turns.js';
import { ServerPlaces } from './session/storage/server-places.js';
import { StartRecord } from './start-record.js';
import { SqliteStore } from './store/sqlite/store.js';
import type { Store } from './store/store.js';
import { OutlivedSessions } from './users/outlived-sessions.js';

/** Everything a running sluice shares between its front-ends. */
export interface Services extends AdminServices {
  readonly authenticator: Authenticator;
  /** What must hold for the whole server (limits, scores, quotas, audit): here, or in the primary. */
  readonly coordinator: Coordinator;
  /** Admission and login policy, shared by every front-end. */
  readonly gate: Gate;
  readonly sessionDeps: SessionDeps;
  /** This process's logged-in sessions (the whole server's are Coordination.sessions). */
  readonly live: LiveRegistry;
}

/** The state a server keeps once however many processes serve: see Coordinator. */
export interface Coordination {
  readonly coordinator: LocalCoordinator;
  /** The writer of the trail; null when audit.enabled is false. */
  readonly auditLog: AuditLog | null;
  /** Each user's ledger, for the primary answering workers synchronously. */
  readonly quotas: QuotaBook;
  /** The server's numbers, every worker's included (/metrics); null with the admin API off (admin.listen), which alone serves them. */
  readonly metrics: ServerMetrics | null;
  /** Whether the serving processes listen (/readyz). */
  readonly serving: ServingState;
  /** What the start report said (listeners, front-ends), for the admin API. */
  readonly started: StartRecord;
  /** Every logged-in session of the server (a LiveSessionsView): the serving process's registry, or each worker's over IPC. */
  readonly sessions: AllSessions;
  /** The defender of every serving process: the bans it holds that the store has not taken are listed and lifted through it. */
  readonly defender: Defender;
  /**
   * Tells every node sharing the store, this one included, to end a user's
   * sessions (each ends its own at the notice); null: this node is the only one.
   */
  readonly everyNode: { endUserSessions(user: string, reason: string): Promise<void> } | null;
  /** Ends the failure-throttle window and flushes the trail. */
  close(): Promise<void>;
}

/**
 * An error of the audit trail's files, logged. One of the file system (a
 * code: EACCES, ENOSPC) is the operator's to fix: one line, its message
 * naming the file where the trail knows it, no stack; anything else is a
 * fault of the server, with its stack.
 */
function trailError(log: Logger, err: Error): void {
  const { code } = err as NodeJS.ErrnoException;
  if (code === undefined && !(err instanceof FileNotMade)) log.error({ err }, 'audit trail');
  else log.error({ code }, `audit trail: ${err.message}`);
}

/** The coordinator's state, on the store `base` opened: the audit trail is written here and nowhere else. */
export async function openCoordination(base: AdminServices): Promise<Coordination> {
  const { config } = base;
  const { audit: settings } = config;
  // Kept only where /metrics is served: the admin API, which starts with the rest or fails the start.
  const metrics = config.admin.listen === '' ? null : new (await import('./metrics/registry.js')).ServerMetrics(() => base.bans.activeCount(), config.admin.metricsPublic);
  const stopSampling = metrics ? sampleProcess((sample) => metrics.sampled('0', sample)) : () => undefined;
  // One per server, here where its coordination is: every process's commits leave the checkpoints to it (Checkpointer).
  const checkpointer = base.store instanceof SqliteStore ? base.store.checkpointOnThread((message) => base.log.error(`SQLite: ${message}`)) : null;
  // The trail's files have not taken MAX_UNWRITTEN bytes of lines (their disk full). None may be lost and
  // none held without end (found by a review: +49 MiB for 80,000 refused commands), so no more are made:
  // the live sessions end and connections are refused until the files take the lines again.
  let trailBehind = false;
  const auditLog = settings.enabled
    ? await AuditLog.open({
        file: resolve(config.dataDir, settings.file),
        node: config.nodeId,
        rotateSize: settings.rotateSize,
        keep: settings.keep,
        xferlog: settings.xferlog === '' ? null : resolve(config.dataDir, settings.xferlog),
        anonymousFtp: config.ftp.anonymous.enabled,
        onError: (err) => trailError(base.log, err),
        // Said where the operator looks after a crash, not only in the trail (found by an operator's walk).
        onTorn: (bytes) => base.log.warn({ bytes }, `audit trail: its last line (${bytes} bytes) was torn by a crash; it stays, outside the chain, and this start's record names it (sluice audit verify)`),
        onBacklog: (over) => {
          trailBehind = over;
          if (!over) return base.log.warn('audit trail written again: connections admitted');
          base.log.error(`audit trail: over ${MAX_UNWRITTEN / 1048576} MiB not written (its disk full?): live sessions ended, connections refused until it is`);
          sessions.endAll('audit trail cannot be written').catch((err: unknown) => base.log.error({ err }, 'ending sessions'));
        },
        metrics: metrics ?? undefined,
      })
    : null;
  if (!auditLog) base.log.warn('audit trail disabled (audit.enabled: false): nothing is recorded');
  // What a client is counted as (an address, an IPv6 network), as the gate counts it: by hooks and the throttle below.
  const sources = banCheck(base);
  const { hooks: hookSettings } = config;
  const hooks =
    hookSettings.actions.length > 0
      ? new Hooks(hookSettings.actions, hookSettings.concurrency, base.log.child({ part: 'hooks' }), (e) => auditLog?.system(e), (ip) => sources.source(ip), config.ftp.anonymous.enabled)
      : null;
  // Hooks see the events as the trail records them (after the throttle below), even with the file off.
  const trail = teeTrail(auditLog, hooks);
  // Failed logins come before any login, as fast as an attacker likes: aggregated per source.
  // Every other event passes the throttle untouched.
  const throttle = trail ? new FailureThrottle(trail, (ip) => sources.source(ip)) : null;
  const audit = trail && throttle ? { record: throttle.record.bind(throttle), system: trail.system.bind(trail) } : null;
  const { limits } = config;
  const registry = new ConnectionRegistry(limits.maxSessions, limits.maxSessionsPerIp, limits.maxSessionsPerUser);
  const shared = await base.store.shared(config.nodeId, (err) => base.log.error({ err }, 'shared store: a count was not written, or the node id lock was lost'));
  const counts = shared ?? localCounts(base.store);
  const quotas = new QuotaBook(counts.quota, shared?.writeLocks ?? null);
  const sessions = new AllSessions();
  // A user disabled or removed through another node (or this node's CLI) loses its sessions here too,
  // as the admin API's own changes end them; its notice for a change made here finds none left.
  shared?.onUserRevoked((user, why) => {
    sessions.endUser(user, `${why} by an administrator`).catch((err: unknown) => base.log.error({ err, user }, 'ending sessions'));
  });
  // A user whose sessions an administrator ended through another node loses them here too, with the same reason.
  // One this node learns of late (its notices connection was down) ends those logged in when it was made only.
  shared?.onUserSessionsEnded((user, reason, before) => {
    endUserSessions(sessions, user, reason, before).catch((err: unknown) => base.log.error({ err, user }, 'ending sessions'));
  });
  // An address an administrator banned through another node (or the CLI) loses its sessions here too, as the
  // node that took the ban ends its own; its notice for a ban made here finds none left.
  // One learnt late ends, besides those live when it was made, those logged in since while it is still in force
  // (this node's copy of the bans, refilled before, missed it meanwhile): an address unbanned since keeps its new ones.
  shared?.onAddressBanned((address, before) => {
    const since = before !== null && base.store.bans.banned(address) ? null : before;
    endSessionsFrom(sessions, address, limits.ipv6Prefix, BANNED_BY_ADMIN, since).catch((err: unknown) => base.log.error({ err, address }, 'ending sessions'));
  });
  // Forgotten while cut off: its sessions' counts and quota leases were given to the other nodes. Ended, their
  // uploads aborted, so that what they hold leaves this node's books too and the users' limits hold again.
  shared?.onForgotten(() => {
    base.log.error(`this node (${config.nodeId}) was forgotten (sluice store forget-node) while cut off from the store: its live sessions end`);
    sessions.endAll('this node was forgotten while cut off from the store').catch((err: unknown) => base.log.error({ err }, 'ending sessions'));
  });
  if (shared) {
    // Any other change there (rules, permissions) ends here the sessions it would refuse or narrow, as the admin API does for its own.
    const outlived = new OutlivedSessions(
      (name) => base.store.users.get(name),
      async (id) => (await base.store.users.keys(id)).map((k) => k.fingerprint),
      sessions,
      (err, user) => base.log.error({ err, user }, 'checking live sessions against their changed users'),
    );
    shared.onUserChanged((userId) => outlived.check(userId));
  }
  const defender = new Defender(sources, counts.failures, config.defender, audit, base.log.child({ part: 'defender' }));
  return {
    coordinator: new LocalCoordinator(registry, shared?.userSessions ?? null, defender, quotas, audit, metrics ?? UNCOUNTED, config.defender.threshold, new DataPlaces(config.ftp.maxPassivePortsPerIp, config.ftp.maxPassivePortsPerUser), () => trailBehind),
    auditLog,
    quotas,
    metrics,
    serving: new ServingState(),
    started: new StartRecord(),
    sessions,
    defender,
    everyNode: shared ? { endUserSessions: (user, reason) => shared.endUserSessions(user, reason) } : null,
    async close() {
      stopSampling();
      throttle?.flush();
      await hooks?.drain(HOOK_DRAIN_MS);
      await shared?.stop().catch((err: unknown) => base.log.error({ err }, 'shared store: what this node owes it was not all written or given back at the stop'));
      try {
        await auditLog?.close();
      } finally {
        // Whatever the trail's close met: the checkpointer's thread would otherwise keep the process alive.
        await checkpointer?.stop();
      }
    },
  };
}

/** A stopping server waits this long for hooks still running (their failures are still recorded). */
const HOOK_DRAIN_MS = 5000;

/** The audit file and the hooks as one trail; null when neither is on. */
function teeTrail(auditLog: AuditLog | null, hooks: Hooks | null): AuditTrail | null {
  if (!hooks) return auditLog;
  if (!auditLog) return { record: (a, e) => hooks.record(a, e), system: () => undefined };
  return {
    record(actor, event) {
      auditLog.record(actor, event);
      hooks.record(actor, event);
    },
    system: (e) => auditLog.system(e),
  };
}

/**
 * What a node alone on its store counts in its own memory: offences, and
 * quota room settled into the store's counters, which answer at once.
 */
function localCounts(store: Store): { failures: FailureTally; quota: QuotaRooms } {
  if (!(store instanceof SqliteStore)) throw new Error(`the ${store.kind} store shares no counts and has no local counters`);
  return { failures: new MemoryFailureTally(), quota: new LocalRooms(store.users.counters) };
}

function banCheck(base: AdminServices): BanCheck {
  return new BanCheck(base.bans, base.config.defender.allowList, base.config.limits.ipv6Prefix);
}

/**
 * A serving process's services on its own store, with the coordinator that
 * keeps the shared state: this process's own, or the primary's for a worker
 * (which also gets told of each upload, to record it should the worker die).
 */
export function servicesOn(base: AdminServices, coordinator: Coordinator, inFlight?: InFlightTransfers, worker = 0): Services {
  const { config } = base;
  const { anonymous } = config.ftp;
  const authenticator = new Authenticator(base.users, base.hasher, coordinator.audit, coordinator.metrics, anonymous.enabled ? anonymous : null);
  const scanning = scanningOf(config, base.log, coordinator);
  const live = new LiveRegistry(worker, authenticator, (setting) => scansWith(scanning, setting));
  const serverPlaces = new ServerPlaces(config.dataDir, serverFilesOf(config));
  const walks = new WalkTurns(WALKS_PER_HOME);
  return {
    ...base,
    coordinator,
    authenticator,
    gate: new Gate(coordinator, banCheck(base), authenticator, config, base.log.child({ part: 'gate' })),
    sessionDeps: {
      audit: coordinator.audit,
      metrics: coordinator.metrics,
      quotas: coordinator.ledgers,
      openHandles: new HandleBook(config.sftp.maxHandlesPerUser),
      atomicUploads: config.uploads.atomic,
      storage: (home) => openLocalStorage(home, serverPlaces, walks),
      hashResumedUploads: config.audit.hashResumedUploads,
      budgets: new ConnectionBudgets({ up: config.limits.rateUp, down: config.limits.rateDown, hash: config.limits.hashRate }),
      receipts: new UploadReceipts(),
      scanning,
      ...(inFlight ? { inFlight } : {}),
      live,
    },
    live,
  };
}

/**
 * Quarantine mode, whenever a scanner is configured: users may be scanned by
 * their own setting even when the server's default is off.
 */
function scanningOf(config: Config, log: Logger, coordinator: Pick<Coordinator, 'scanTurns' | 'keepTurns'>): UploadScanning | null {
  const { uploads } = config;
  const address = uploads.clamdSocket !== '' ? { path: uploads.clamdSocket } : uploads.clamdHost !== '' ? hostPort(uploads.clamdHost) : null;
  if (!address) return null;
  return {
    scanner: loggedScanner(new ClamdScanner(address), log),
    quarantine: loggedQuarantine(
      new QuarantineDir(resolve(config.dataDir, uploads.quarantineDir), { totalBytes: uploads.quarantineMaxBytes, userBytes: uploads.quarantineUserMaxBytes }, coordinator.keepTurns),
      log,
    ),
    timeoutMs: uploads.scanTimeout * 1000,
    turns: coordinator.scanTurns,
    byDefault: uploads.scan === 'clamd',
  };
}

function hostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at), port: Number(text.slice(at + 1)) };
}

/** One process keeping everything itself (workers: 1, and the tests of the shared layer). */
export async function openServices(config: Config): Promise<Services & Pick<Coordination, 'auditLog'>> {
  const base = await openAdmin(config);
  const coordination = await openCoordination(base);
  const services = servicesOn(base, coordination.coordinator);
  return {
    ...services,
    auditLog: coordination.auditLog,
    async close() {
      await coordination.close();
      await base.close();
    },
  };
}
