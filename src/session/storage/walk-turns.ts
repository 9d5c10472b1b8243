/** Walks at once in one home: about 400 descriptors at most, more than a user's clients run at once. */
export const WALKS_PER_HOME = 8;
/** Sessions of one home that keep a chain of directories open between requests (LocalStorage, 16 each at most). */
export const CHAINS_PER_HOME = 8;

/**
 * Turns to walk a path directory by directory, at most `perHome` at once in
 * one home, over all the sessions of that home (its user's, or anonymous
 * FTP's). A walk holds up to about 50 descriptors while it lasts
 * (LocalStorage.walk: the last 17 directories and one in 64 above them);
 * found by a review, one user with a tree 300 deep and 64 STATs in flight on
 * each of 40 SFTP channels held 20,000, the process's limit, and other
 * users' logins, listings and uploads failed. Walks of other homes never
 * wait for these. The turns free go round the walkers waiting (a session's
 * storage each), each walker's own walks in order: in one line, a session
 * with 512 deep STATs in flight kept another of the same user waiting 29 s
 * for one.
 */
export class WalkTurns {
  private readonly homes = new Map<string, Home>();
  /** Per home, the sessions (storages) that keep a chain now. */
  private readonly chains = new Map<string, Set<object>>();

  constructor(
    private readonly perHome: number,
    private readonly chainsPerHome = CHAINS_PER_HOME,
  ) {}

  /**
   * Whether `holder` may keep (or keeps) a chain of open directories in
   * `home` until it drops it. Each session kept one, up to 17 descriptors
   * with the home's own, for 2 s after its last request: found by a review,
   * one user's 10 connections of 10 SFTP channels each, every channel a
   * session, held 1,743 descriptors so between requests (about 17 a session,
   * where the start-up check counts 4), and a dozen such users would hold
   * the 20,000 of the process. The sessions past the first few walk their
   * paths afresh, in their turns.
   */
  keepChain(home: string, holder: object): boolean {
    let holders = this.chains.get(home);
    if (holders?.has(holder)) return true;
    if ((holders?.size ?? 0) >= this.chainsPerHome) return false;
    if (!holders) this.chains.set(home, (holders = new Set()));
    holders.add(holder);
    return true;
  }

  /** `holder` keeps no chain in `home` any more. */
  dropChain(home: string, holder: object): void {
    const holders = this.chains.get(home);
    if (!holders?.delete(holder)) return;
    if (holders.size === 0) this.chains.delete(home);
  }

  /** Resolves when `home` has a turn free for `walker`; call the function returned once the walk is done. */
  async take(home: string, walker: object): Promise<() => void> {
    let entry = this.homes.get(home);
    if (!entry) this.homes.set(home, (entry = { walking: 0, waiting: new Map() }));
    const here = entry;
    if (here.walking >= this.perHome) {
      await new Promise<void>((resolve, reject) => {
        const line = here.waiting.get(walker);
        if (line) line.push({ resolve, reject });
        else here.waiting.set(walker, [{ resolve, reject }]);
      });
    } else {
      here.walking++;
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      // The turn passes straight to the first walker in line, still counted; that walker goes to the back.
      const first = here.waiting.entries().next();
      if (!first.done) {
        const [next, line] = first.value;
        here.waiting.delete(next);
        const turn = line.shift() as Waiting;
        if (line.length > 0) here.waiting.set(next, line);
        return turn.resolve();
      }
      if (--here.walking === 0) this.homes.delete(home);
    };
  }

  /**
   * `walker`'s waits still in line leave it, refused with `why`: a connection
   * that left with hundreds of requests in flight kept the user's other
   * sessions waiting behind walks nobody would read.
   */
  abandon(home: string, walker: object, why: Error): void {
    const waiting = this.homes.get(home)?.waiting;
    const line = waiting?.get(walker);
    if (!waiting || !line) return;
    waiting.delete(walker);
    for (const w of line) w.reject(why);
  }
}

interface Home {
  walking: number;
  /** Each walker's waits in order; the Map's order is the order of the turns. */
  waiting: Map<object, Waiting[]>;
}

interface Waiting {
  resolve: () => void;
  reject: (err: Error) => void;
}
