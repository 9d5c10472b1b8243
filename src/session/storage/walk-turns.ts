/** Walks at once in one home: about 400 descriptors at most, more than a user's clients run at once. */
export const WALKS_PER_HOME = 8;

/**
 * Turns to walk a path directory by directory, at most `perHome` at once in
 * one home, over all the sessions of that home (its user's, or anonymous
 * FTP's), the rest waiting in order. A walk holds up to about 50
 * descriptors while it lasts (LocalStorage.walk: the last 17 directories
 * and one in 64 above them); found by a review, one user with a tree 300
 * deep and 64 STATs in flight on each of 40 SFTP channels held 20,000, the
 * process's limit, and other users' logins, listings and uploads failed.
 * Walks of other homes never wait for these.
 */
export class WalkTurns {
  private readonly homes = new Map<string, { walking: number; waiting: Waiting[] }>();

  constructor(private readonly perHome: number) {}

  /** Resolves when `home` has a turn free for `walker`; call the function returned once the walk is done. */
  async take(home: string, walker: object): Promise<() => void> {
    let entry = this.homes.get(home);
    if (!entry) this.homes.set(home, (entry = { walking: 0, waiting: [] }));
    const here = entry;
    if (here.walking >= this.perHome) await new Promise<void>((resolve, reject) => here.waiting.push({ walker, resolve, reject }));
    else here.walking++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      // The turn passes straight to the next in line, still counted.
      const next = here.waiting.shift();
      if (next) return next.resolve();
      if (--here.walking === 0) this.homes.delete(home);
    };
  }

  /**
   * `walker`'s waits still in line leave it, refused with `why`: a connection
   * that left with hundreds of requests in flight kept the user's other
   * sessions waiting behind walks nobody would read (29 s in a review's run).
   */
  abandon(home: string, walker: object, why: Error): void {
    const here = this.homes.get(home);
    if (!here) return;
    const leaving = here.waiting.filter((w) => w.walker === walker);
    if (leaving.length === 0) return;
    here.waiting = here.waiting.filter((w) => w.walker !== walker);
    for (const w of leaving) w.reject(why);
  }
}

interface Waiting {
  walker: object;
  resolve: () => void;
  reject: (err: Error) => void;
}
