import type { ServerPlaces } from './storage/server-places.js';
import { realHome } from './storage/local-sweep.js';

/** The slice of a pino logger the report writes to. */
interface ReportLog {
  error(obj: object, msg: string): void;
}

/**
 * Start-up: homes that overlap the server's own files, which every login of
 * their user refuses (openLocalStorage) but nothing said before the first
 * one: a quarantine or audit trail configured inside a user's home locked
 * that user out with a line in the log at each attempt (found by an
 * operator's walk). Said once here, with what to move. A home that does not
 * exist yet is made at login, where it is checked.
 */
export async function reportHomesOnServerFiles(users: readonly { name: string; home: string }[], places: ServerPlaces, log: ReportLog): Promise<void> {
  for (const user of users) {
    const home = await realHome(user.home);
    const conflict = home === null ? null : places.conflict(home);
    if (conflict !== null) {
      log.error({ user: user.name, home }, `home ${home} of ${user.name} ${conflict}: every login of ${user.name} is refused until the home or the configured place moves`);
    }
  }
}
