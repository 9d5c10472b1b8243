import type Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AuditLog, createLogger } from './audit/log.js';
import { Authenticator } from './auth/authenticator.js';
import { PasswordHasher } from './auth/passwords.js';
import type { Config } from './config/schema.js';
import { QuotaBook } from './session/quota.js';
import type { SessionDeps } from './session/session.js';
import { openDatabase } from './store/db.js';
import { UserStore } from './store/users.js';
import { UserAdmin } from './users/admin.js';

/** Everything a running sluice shares between its front-ends and the CLI. */
export interface Services {
  readonly config: Config;
  readonly log: Logger;
  readonly db: Database.Database;
  readonly users: UserStore;
  readonly hasher: PasswordHasher;
  readonly admin: UserAdmin;
  readonly audit: AuditLog;
  readonly authenticator: Authenticator;
  readonly sessionDeps: SessionDeps;
  close(): Promise<void>;
}

export function openServices(config: Config): Services {
  const log = createLogger(config.logLevel);
  mkdirSync(join(config.dataDir, 'homes'), { recursive: true, mode: 0o750 });
  const db = openDatabase(join(config.dataDir, 'sluice.db'));
  const users = new UserStore(db);
  const hasher = new PasswordHasher(config.auth.maxConcurrentHashes);
  const audit = new AuditLog(join(config.dataDir, 'audit.log'));
  return {
    config,
    log,
    db,
    users,
    hasher,
    admin: new UserAdmin(users, hasher, config.dataDir),
    audit,
    authenticator: new Authenticator(users, hasher, audit),
    sessionDeps: { audit, quotas: new QuotaBook(users), atomicUploads: config.uploads.atomic },
    async close() {
      await audit.close();
      db.close();
    },
  };
}
