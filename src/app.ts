import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { AuditLog, createLogger } from './audit/log.js';
import { Authenticator } from './auth/authenticator.js';
import { PasswordHasher } from './auth/passwords.js';
import type { Config } from './config/schema.js';
import type { Coordinator } from './coordinator/coordinator.js';
import { LocalCoordinator } from './coordinator/local.js';
import { ServingState } from './metrics/health.js';
import { ServerMetrics } from './metrics/registry.js';
import { sampleProcess } from './metrics/sampler.js';
import { BanCheck } from './security/ban-check.js';
import { Defender } from './security/defender.js';
import { FailureThrottle } from './security/failure-throttle.js';
import { Gate } from './security/gate.js';
import { HandleBook } from './session/open-handles.js';
import { QuotaBook } from './session/quota.js';
import { ConnectionRegistry } from './session/registry.js';
import type { InFlightUploads, SessionDeps } from './session/session.js';
import { openLocalStorage } from './session/storage/local.js';
import { StartRecord } from './start-record.js';
import { AdminTokenStore } from './store/admin-tokens.js';
import { BanStore } from './store/bans.js';
import { openDatabase } from './store/db.js';
import { UserStore } from './store/users.js';
import { UserAdmin } from './users/admin.js';

/** What administration needs: the user store and password hashing. */
export interface AdminServices {
  readonly config: Config;
  readonly log: Logger;
  readonly users: UserStore;
  readonly bans: BanStore;
  /** The admin API's bearer tokens (hashed). */
  readonly tokens: AdminTokenStore;
  readonly hasher: PasswordHasher;
  readonly admin: UserAdmin;
  close(): Promise<void>;
}

/** Everything a running sluice shares between its front-ends. */
export interface Services extends AdminServices {
  readonly authenticator: Authenticator;
  /** What must hold for the whole server (limits, scores, quotas, audit): here, or in the primary. */
  readonly coordinator: Coordinator;
  /** Admission and login policy, shared by every front-end. */
  readonly gate: Gate;
  readonly sessionDeps: SessionDeps;
}

/** The state a server keeps once however many processes serve: see Coordinator. */
export interface Coordination {
  readonly coordinator: LocalCoordinator;
  /** The writer of the trail; null when audit.enabled is false. */
  readonly auditLog: AuditLog | null;
  /** Each user's ledger, for the primary answering workers synchronously. */
  readonly quotas: QuotaBook;
  /** The server's numbers, every worker's included (/metrics). */
  readonly metrics: ServerMetrics;
  /** Whether the serving processes listen (/readyz). */
  readonly serving: ServingState;
  /** What the start report said (listeners, front-ends), for the admin API. */
  readonly started: StartRecord;
  /** Ends the failure-throttle window and flushes the trail. */
  close(): Promise<void>;
}

/**
 * For the CLI: no audit log. The server is the audit trail's only writer;
 * a second process appending to it would fork the hash chain.
 */
export function openAdmin(config: Config): AdminServices {
  const log = createLogger(config.logLevel, config.logFormat);
  mkdirSync(join(config.dataDir, 'homes'), { recursive: true, mode: 0o750 });
  const db = openDatabase(join(config.dataDir, 'sluice.db'));
  const users = new UserStore(db);
  const hasher = new PasswordHasher(config.auth.maxConcurrentHashes);
  return {
    config,
    log,
    users,
    bans: new BanStore(db),
    tokens: new AdminTokenStore(db),
    hasher,
    admin: new UserAdmin(users, hasher, config.dataDir),
    async close() {
      db.close();
    },
  };
}

/** The coordinator's state, on the store `base` opened: the audit trail is written here and nowhere else. */
export function openCoordination(base: AdminServices): Coordination {
  const { config } = base;
  const { audit: settings } = config;
  const metrics = new ServerMetrics(() => base.bans.activeCount());
  const stopSampling = sampleProcess((sample) => metrics.sampled('0', sample));
  const auditLog = settings.enabled
    ? new AuditLog({
        file: resolve(config.dataDir, settings.file),
        rotateSize: settings.rotateSize,
        keep: settings.keep,
        xferlog: settings.xferlog === '' ? null : resolve(config.dataDir, settings.xferlog),
        onError: (err) => base.log.error({ err }, 'audit log'),
        metrics,
      })
    : null;
  if (!auditLog) base.log.warn('audit trail disabled (audit.enabled: false): transfers are neither hashed nor recorded');
  // Failed logins come before any login, as fast as an attacker likes: aggregated per address.
  // Every other event passes the throttle untouched.
  const throttle = auditLog ? new FailureThrottle(auditLog) : null;
  const audit = auditLog && throttle ? { record: throttle.record.bind(throttle), system: auditLog.system.bind(auditLog) } : null;
  const { limits } = config;
  const registry = new ConnectionRegistry(limits.maxSessions, limits.maxSessionsPerIp, limits.maxSessionsPerUser);
  const defender = new Defender(banCheck(base), config.defender, audit, base.log.child({ part: 'defender' }));
  const quotas = new QuotaBook(base.users);
  return {
    coordinator: new LocalCoordinator(registry, defender, quotas, audit, metrics),
    auditLog,
    quotas,
    metrics,
    serving: new ServingState(),
    started: new StartRecord(),
    async close() {
      stopSampling();
      throttle?.flush();
      await auditLog?.close();
    },
  };
}

function banCheck(base: AdminServices): BanCheck {
  return new BanCheck(base.bans, base.config.defender.allowList);
}

/**
 * A serving process's services on its own store, with the coordinator that
 * keeps the shared state: this process's own, or the primary's for a worker
 * (which also gets told of each upload, to record it should the worker die).
 */
export function servicesOn(base: AdminServices, coordinator: Coordinator, inFlight?: InFlightUploads): Services {
  const { config } = base;
  const { anonymous } = config.ftp;
  const authenticator = new Authenticator(base.users, base.hasher, coordinator.audit, coordinator.metrics, anonymous.enabled ? anonymous : null);
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
      storage: openLocalStorage,
      hashResumedUploads: config.audit.hashResumedUploads,
      rates: { up: config.limits.rateUp, down: config.limits.rateDown },
      ...(inFlight ? { inFlight } : {}),
    },
  };
}

/** One process keeping everything itself (workers: 1, and the tests of the shared layer). */
export function openServices(config: Config): Services & Pick<Coordination, 'auditLog'> {
  const base = openAdmin(config);
  const coordination = openCoordination(base);
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
