import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { AuditLog, createLogger } from './audit/log.js';
import { Authenticator } from './auth/authenticator.js';
import { PasswordHasher } from './auth/passwords.js';
import type { Config } from './config/schema.js';
import { Defender } from './security/defender.js';
import { FailureThrottle } from './security/failure-throttle.js';
import { Gate } from './security/gate.js';
import { HandleBook } from './session/open-handles.js';
import { QuotaBook } from './session/quota.js';
import { ConnectionRegistry } from './session/registry.js';
import type { SessionDeps } from './session/session.js';
import { openLocalStorage } from './session/storage/local.js';
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
  readonly hasher: PasswordHasher;
  readonly admin: UserAdmin;
  close(): Promise<void>;
}

/** Everything a running sluice shares between its front-ends. */
export interface Services extends AdminServices {
  /** null when audit.enabled is false. */
  readonly audit: AuditLog | null;
  readonly authenticator: Authenticator;
  /** Admission and login policy, shared by every front-end. */
  readonly gate: Gate;
  readonly sessionDeps: SessionDeps;
}

/**
 * For the CLI: no audit log. The server is the audit trail's only writer;
 * a second process appending to it would fork the hash chain.
 */
export function openAdmin(config: Config): AdminServices {
  const log = createLogger(config.logLevel);
  mkdirSync(join(config.dataDir, 'homes'), { recursive: true, mode: 0o750 });
  const db = openDatabase(join(config.dataDir, 'sluice.db'));
  const users = new UserStore(db);
  const hasher = new PasswordHasher(config.auth.maxConcurrentHashes);
  return {
    config,
    log,
    users,
    bans: new BanStore(db),
    hasher,
    admin: new UserAdmin(users, hasher, config.dataDir),
    async close() {
      db.close();
    },
  };
}

export function openServices(config: Config): Services {
  const base = openAdmin(config);
  const { audit: settings } = config;
  const audit = settings.enabled
    ? new AuditLog({
        file: resolve(config.dataDir, settings.file),
        rotateSize: settings.rotateSize,
        keep: settings.keep,
        xferlog: settings.xferlog === '' ? null : resolve(config.dataDir, settings.xferlog),
        onError: (err) => base.log.error({ err }, 'audit log'),
      })
    : null;
  if (!audit) base.log.warn('audit trail disabled (audit.enabled: false): transfers are neither hashed nor recorded');
  // Failed logins come before any login, as fast as an attacker likes: aggregated per address.
  const loginAudit = audit ? new FailureThrottle(audit) : null;
  const authenticator = new Authenticator(base.users, base.hasher, loginAudit);
  const { limits } = config;
  const registry = new ConnectionRegistry(limits.maxSessions, limits.maxSessionsPerIp, limits.maxSessionsPerUser);
  return {
    ...base,
    audit,
    authenticator,
    gate: new Gate(
      registry,
      new Defender(base.bans, config.defender, audit, base.log.child({ part: 'defender' })),
      authenticator,
      config,
      base.log.child({ part: 'gate' }),
    ),
    sessionDeps: {
      audit,
      quotas: new QuotaBook(base.users),
      openHandles: new HandleBook(config.sftp.maxHandlesPerUser),
      atomicUploads: config.uploads.atomic,
      storage: openLocalStorage,
      hashResumedUploads: settings.hashResumedUploads,
    },
    async close() {
      loginAudit?.flush();
      await audit?.close();
      await base.close();
    },
  };
}
