import { resolve } from 'node:path';
import { realHome } from './storage/local-sweep.js';

/** A user whose home is checked. */
interface HomeOwner {
  readonly name: string;
  readonly home: string;
}

/** The slice of a pino logger the report writes to. */
interface ReportLog {
  error(obj: object, msg: string): void;
}

/**
 * Start-up, on every store: homes nested in another user's, which sluice
 * refuses to make (homeNesting) but an older version, or an edit of the
 * store by hand, may have left. The outer user can redirect the inner
 * user's logins, so each is an error for the administrator to move. Sorted
 * by components, each home is checked against the homes before it that
 * still hold it: one pass, whatever the number of users.
 */
export async function reportNestedHomes(users: readonly HomeOwner[], log: ReportLog): Promise<void> {
  // Each home both as written and where links lead, as homeNesting compares them: a home written through a
  // link in another user's home is elsewhere for realpath, but its logins resolve that link.
  const byHome = new Map<string, Set<string>>();
  for (const user of users) {
    const real = await realHome(user.home);
    for (const place of new Set([resolve(user.home), ...(real === null ? [] : [real])])) {
      byHome.set(place, (byHome.get(place) ?? new Set()).add(user.name));
    }
  }
  const reported = new Set<string>();
  // '/' below every character a name may hold: a home's descendants follow it, with nothing between.
  const byComponents = (h: string) => h.replaceAll('/', '\0');
  const homes = [...byHome.keys()].sort((a, b) => (byComponents(a) < byComponents(b) ? -1 : 1));
  const holders: string[] = [];
  for (const home of homes) {
    while (holders.length > 0 && !home.startsWith((holders.at(-1) as string) + '/')) holders.pop();
    const inner = [...(byHome.get(home) ?? [])];
    const others = (place: string) => [...(byHome.get(place) ?? [])].filter((name) => !inner.includes(name));
    // The nearest home above it of someone else (a user's two places may hold each other).
    const outer = holders.findLast((place) => others(place).length > 0);
    const holding = outer === undefined ? [] : others(outer);
    // Once per pair of users, whichever of their places showed it.
    const pair = `${inner.join(',')}\0${holding.join(',')}`;
    if (outer !== undefined && holding.length > 0 && !reported.has(pair)) {
      reported.add(pair);
      log.error({ users: inner, home, outerUsers: holding, outerHome: outer }, `home ${home} of ${inner.join(', ')} lies in ${outer}, the home of ${holding.join(', ')}, who can redirect its logins anywhere: give it a home of its own`);
    }
    holders.push(home);
  }
}
