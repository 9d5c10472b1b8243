import type { SystemAuditSink } from '../audit/events.js';
import type { StoredUsage } from './account.js';
import { realHome, subdirectories, walkHome } from './storage/local-sweep.js';
import { shown } from './unsafe-chars.js';

/** A user whose home the sweep recounts. */
export interface SweptUser {
  readonly id: number;
  readonly name: string;
  readonly home: string;
}

/** The slice of a pino logger the sweep writes to. */
interface SweepLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Start-up, before any session, for every home under `homesDir` and each
 * user's home:
 *
 * - remove the atomic-upload temporaries a crash left behind: clients can
 *   neither see nor name them and no ledger counts them, so nothing else ever
 *   would; one audit line per home with the count and bytes;
 * - recount the home as the quota counts it and, where a user's stored usage
 *   differs, store the disk's. A crash during an in-place upload leaves growth
 *   that was only to be recorded when the upload settled, and older versions
 *   counted neither directories nor symlinks; one audit line per corrected user.
 *
 * - say (warn) how many names in the home no client may give, which no
 *   client sees or reaches (paths.ts isClientName).
 *
 * Each home is walked once however many users share it, and each of them gets
 * its count: every one of them sees, and is charged for, all of it. A home
 * nested in another (sluice no longer makes one: nested-homes.ts) is walked
 * on its own and also counted in the outer one, whose user sees it too.
 * Symlinks are never followed: every directory is opened O_NOFOLLOW through
 * its parent's descriptor, as the local storage does. A home that cannot be
 * walked whole is logged, not fatal, and its usage left as it is.
 */
export async function sweepHomes(
  homesDir: string,
  users: readonly SweptUser[],
  store: StoredUsage,
  audit: SystemAuditSink | null,
  log: SweepLog,
): Promise<void> {
  const usersByHome = new Map<string, SweptUser[]>();
  let homes: string[] = [];
  try {
    homes = await subdirectories(homesDir);
  } catch (err) {
    log.error({ err, dir: homesDir }, 'sweeping homes');
  }
  for (const home of homes) {
    const real = await realHome(home);
    if (real !== null && !usersByHome.has(real)) usersByHome.set(real, []);
  }
  for (const user of users) {
    const real = await realHome(user.home);
    if (real === null) continue;
    const sharing = usersByHome.get(real);
    if (sharing) sharing.push(user);
    else usersByHome.set(real, [user]);
  }
  for (const [home, owners] of usersByHome) {
    const swept = await walkHome(home);
    if (swept === null) continue;
    const { walk, error } = swept;
    if (error !== null) log.error({ err: error, home }, 'sweeping a home');
    if (walk.temps.count > 0) {
      const removed = { home, ...walk.temps };
      audit?.system({ event: 'upload-temps-removed', ...removed });
      log.info(removed, 'removed upload temporaries left by an earlier run');
    }
    if (walk.unreachable.count > 0) {
      // Made on the host, or through an older version before such names were refused (a zero width space, a
      // bidi mark): no client can list, read or remove them, and the operator is the one who can rename them.
      const { count, example } = walk.unreachable;
      log.warn({ home, names: count, example: shown(example ?? '') }, 'names in this home that no client may give are not listed or served: rename them on the host');
    }
    if (error === null) for (const user of owners) await recordUsage(user, home, walk.usage, store, audit, log);
  }
}

async function recordUsage(
  user: SweptUser,
  home: string,
  real: { bytes: number; files: number },
  store: StoredUsage,
  audit: SystemAuditSink | null,
  log: SweepLog,
): Promise<void> {
  const stored = await store.usage(user.id);
  if (stored.bytes === real.bytes && stored.files === real.files) return;
  await store.setUsage(user.id, real.bytes, real.files);
  const event = { user: user.name, home, oldBytes: stored.bytes, oldFiles: stored.files, ...real };
  audit?.system({ event: 'usage-recounted', ...event });
  log.info(event, 'stored usage differed from the disk: recounted');
}
