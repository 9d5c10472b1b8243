import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { adminEndpoint } from './admin/endpoint.js';
import { createLogger } from './audit/log.js';
import { ARGON2_PARAMS, PasswordHasher } from './auth/passwords.js';
import type { Config } from './config/schema.js';
import { hookCodePlaces, hookNamedFiles, hookSearchPath } from './hooks/named-files.js';
import type { ServerFile } from './session/storage/server-places.js';
import { migrationsDir } from './store/migrations.js';
import { openStore } from './store/open.js';
import type { AdminTokenRepository, BanRepository, Store, UserRepository } from './store/store.js';
import { UserAdmin } from './users/admin.js';

// Apart from app.ts: the CLI's user, ban and token commands open this and
// nothing of the protocols, metrics or hooks that serving loads.

/** What administration needs: the user store and password hashing. */
export interface AdminServices {
  readonly config: Config;
  readonly log: Logger;
  readonly store: Store;
  readonly users: UserRepository;
  readonly bans: BanRepository;
  /** The admin API's bearer tokens (hashed). */
  readonly tokens: AdminTokenRepository;
  readonly hasher: PasswordHasher;
  readonly admin: UserAdmin;
  close(): Promise<void>;
}

/**
 * For the CLI: no audit log. The server is the audit trail's only writer;
 * a second process appending to it would fork the hash chain. `readable`:
 * a SQLite store this user may not write is opened to read only (the CLI's
 * commands that read answer; a server needs to write).
 */
export async function openAdmin(config: Config & { readonly source?: string | null }, readable = false): Promise<AdminServices> {
  const log = createLogger(config.logLevel, config.logFormat);
  mkdirSync(join(config.dataDir, 'homes'), { recursive: true, mode: 0o750 });
  const store = await openStore(config, readable);
  const hasher = new PasswordHasher(config.auth.maxConcurrentHashes, ARGON2_PARAMS, config.auth.passwordCache * 1000);
  return {
    config,
    log,
    store,
    users: store.users,
    bans: store.bans,
    tokens: store.tokens,
    hasher,
    admin: new UserAdmin(store.users, hasher, config.dataDir, serverFilesOf(config)),
    close: () => store.close(),
  };
}

/**
 * The server's own files and directories, which no user's home may be, hold
 * or lie in (UserAdmin): its program (programPlaces), its data, keys and
 * config, the directories its audit trail and xferlog rotate in, the
 * quarantine, the admin socket, and the programs and scripts its hooks run
 * or name (hookNamedFiles), the directories those may load code from
 * (hookCodePlaces), and, with a hook command, the directories of the PATH
 * it runs with (hookSearchPath), which a home may not be or hold. Nor may
 * one be or hold the service account's own home, or lie in a dot-directory
 * of it: what runs as the server reads its settings there (a hook's curl its
 * ~/.curlrc, git and Python theirs, sshd the account's .ssh/authorized_keys;
 * found by an adversarial review).
 */
export function serverFilesOf(config: Config & { readonly source?: string | null }): ServerFile[] {
  const inData = (path: string) => resolve(config.dataDir, path);
  const { audit, uploads, admin, hooks } = config;
  const socket = admin.listen === '' ? null : adminEndpoint(admin.listen);
  return [
    ...programPlaces(),
    config.dataDir,
    config.certsDir,
    ...(config.source ? [config.source] : []),
    dirname(inData(audit.file)),
    ...(audit.xferlog === '' ? [] : [dirname(inData(audit.xferlog))]),
    inData(uploads.quarantineDir),
    ...(socket && 'path' in socket ? [resolve(socket.path)] : []),
    ...hooks.actions.flatMap((a) => [
      ...hookNamedFiles(a.command ?? []).map((path) => ({ path, what: `named by hook ${a.name}` })),
      ...hookCodePlaces(a.command ?? []).map((path) => ({
        path,
        what: `hook ${a.name} may load code from there: give its program or script a directory of its own, apart from the data directory and the homes`,
      })),
    ]),
    { path: homedir(), what: "the server account's home: what runs as the server reads its settings there", holdOnly: true },
    ...(hooks.actions.some((a) => a.command)
      ? hookSearchPath().map((path) => ({ path, what: 'in the PATH hook commands run with: a program put there would run as the server', holdOnly: true as const }))
      : []),
  ];
}

/**
 * What the server runs from: its compiled code, its launcher, its
 * package.json (module type and resolution), its migrations, every
 * node_modules a module of it may load a dependency from (Node's lookup
 * paths from the install, the global folders and NODE_PATH included), and
 * the Node binary. A home holding one let a user replace code the server
 * runs at its next start (found by a review: a user made through the API
 * with its home at the checkout's dist/ overwrote bin.cjs over SFTP). Not
 * the install directory as a whole: `npm start` keeps the data directory,
 * with the homes in it, there.
 */
function programPlaces(): string[] {
  const code = dirname(fileURLToPath(import.meta.url));
  const root = dirname(code);
  const lookups = createRequire(join(root, 'package.json')).resolve.paths('sluice') ?? [];
  return [code, join(root, 'bin'), join(root, 'package.json'), dirname(migrationsDir('sqlite')), ...lookups, process.execPath];
}
