import type { LiveSessionInfo, LiveSessionsView } from '../session/live.js';
import type { UserRecord } from '../store/records.js';
import { permissionRulesOf } from '../auth/authenticator.js';
import { rulesOfList, sameRules } from '../session/permissions.js';
import { outlivedBy } from './admin.js';

/**
 * Does a session `user` did not outlive hold, in some channel, other
 * permissions than the user's now, or a user read before a change of it?
 * Then each process checks it against the user as it reads it (its scanning,
 * say: LiveSessionsView.userChanged).
 */
function changedFor(user: UserRecord | null, live: LiveSessionInfo): boolean {
  if (!user) return false;
  const now = permissionRulesOf(user);
  return live.permissions.some((held) => !sameRules(rulesOfList(held), now)) || live.revisions.some((r) => r < user.updatedAt.getTime());
}

/**
 * Ends the live sessions of this node that their users, as stored now, no
 * longer allow (outlivedBy), and has the others take permissions changed
 * since they read them: for a change made on another node or in the CLI,
 * whose notice names the user (or nobody: then every user with sessions
 * here is looked at). One look runs at a time; a change told during a look
 * brings one more after it, since the look may have read that user before
 * the change. What a look could not read is looked at again a little later.
 */
export class OutlivedSessions {
  private running = false;
  /** Users the next look is for: their ids, or every user. */
  private pending: Set<number> | 'all' = new Set();

  constructor(
    private readonly readUser: (name: string) => Promise<UserRecord | null>,
    /** The fingerprints of a user's keys as stored. */
    private readonly readKeys: (userId: number) => Promise<string[]>,
    private readonly sessions: LiveSessionsView,
    /** A user (null: the sessions) that could not be read: those sessions are looked at again `retryMs` later. */
    private readonly failed: (err: unknown, user: string | null) => void,
    private readonly retryMs = RETRY_MS,
  ) {}

  /** Look again at `userId`'s sessions (null: everyone's), now or right after the look running. */
  check(userId: number | null): void {
    if (userId === null) this.pending = 'all';
    else if (this.pending !== 'all') this.pending.add(userId);
    if (this.running) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      while (this.pending === 'all' || this.pending.size > 0) {
        const which = this.pending;
        this.pending = new Set();
        await this.look(which).catch((err: unknown) => {
          this.failed(err, null);
          this.later(null);
        });
      }
    } finally {
      this.running = false;
    }
  }

  /** Again, a little later: a store or a worker that failed the look now may answer then. */
  private later(userId: number | null): void {
    setTimeout(() => this.check(userId), this.retryMs).unref();
  }

  private async look(which: ReadonlySet<number> | 'all'): Promise<void> {
    // Before the list, in every process: a login under way that read its user before the change, and
    // registers after the list, reads the user again as its session opens (LiveSessionsView.userChanged).
    // One message whatever the number of users changed: a bulk change names each of them.
    await this.sessions.userChanged(null);
    const byUser = new Map<string, LiveSessionInfo[]>();
    for (const s of await this.sessions.list()) {
      // Only the users changed, of those with sessions here: a read for each, however many changed.
      if (which !== 'all' && !which.has(s.userId)) continue;
      const sessions = byUser.get(s.user);
      if (sessions) sessions.push(s);
      else byUser.set(s.user, [s]);
    }
    for (const [name, live] of byUser) {
      let user: UserRecord | null;
      let keys: string[] | null = null;
      try {
        user = await this.readUser(name);
        // Only where a session logged in by a key: a look at every user reads no keys for password logins.
        if (user && live.some((s) => s.key !== null)) keys = await this.readKeys(user.id);
      } catch (err) {
        this.failed(err, name);
        for (const id of new Set(live.map((s) => s.userId))) this.later(id);
        continue;
      }
      let stale = false;
      for (const s of live) {
        const why = outlivedBy(user, s, keys);
        if (why !== null) await this.sessions.end(s.id, why).catch((err: unknown) => this.failed(err, name));
        else stale ||= changedFor(user, s);
      }
      if (stale && user) await this.sessions.userChanged(user.id).catch((err: unknown) => this.failed(err, name));
    }
  }
}

/** How long a look that could not read a user, or list the sessions, waits to try again. */
const RETRY_MS = 5000;
