/**
 * What several nodes must count together, behind one small interface each:
 * kept in this process when one node serves (security/defender.ts,
 * session/registry.ts), in the shared database when several do
 * (store/postgres/).
 */

/** Offences per address within the defender's window, across every node. */
export interface FailureTally {
  /** Count one offence of `ip` at `now`; resolves to how many it has after `since` (this one included). */
  add(ip: string, now: number, since: number): Promise<number>;
  /** Forget the address's offences (it has just been banned). */
  clear(ip: string): Promise<void>;
}

/** Logged-in sessions per user, across every node. */
export interface UserSessionCounts {
  /** One more session of `user` unless it has `max` already (0: no limit); false: refused, nothing counted. */
  claim(user: string, max: number): Promise<boolean>;
  /** One session of `user` fewer (a claim that succeeded, given back once). */
  release(user: string): Promise<void>;
}
