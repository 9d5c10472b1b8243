import { sourceOf } from '../auth/ip-rules.js';
import type { LiveSessionInfo, LiveSessionsView, UserChangeCounts } from '../session/live.js';

/**
 * The logged-in sessions of the whole server: the union of its parts, each
 * a process's own registry (workers: 1) or a worker asked over IPC (the
 * primary's WorkerLink, which answers for a silent worker by itself, so one
 * worker cannot hold up the others' answers). A session id names one
 * session however many parts are asked.
 */
export class AllSessions implements LiveSessionsView {
  private readonly parts = new Set<LiveSessionsView>();

  /** A part joins; the returned function takes it out (a worker that exited). */
  join(part: LiveSessionsView): () => void {
    this.parts.add(part);
    return () => void this.parts.delete(part);
  }

  async list(): Promise<LiveSessionInfo[]> {
    return (await Promise.all([...this.parts].map((p) => p.list()))).flat();
  }

  async end(id: string, reason: string): Promise<boolean> {
    return (await Promise.all([...this.parts].map((p) => p.end(id, reason)))).some(Boolean);
  }

  /** Ends every session there is; how many. */
  async endAll(reason: string): Promise<number> {
    const ids = new Set((await this.list()).map((s) => s.id));
    return (await Promise.all([...ids].map((id) => this.end(id, reason)))).filter(Boolean).length;
  }

  async endUser(user: string, reason: string): Promise<number> {
    return (await Promise.all([...this.parts].map((p) => p.endUser(user, reason)))).reduce((a, b) => a + b, 0);
  }

  async userChanged(userId: number | null): Promise<UserChangeCounts> {
    const counts = await Promise.all([...this.parts].map((p) => p.userChanged(userId)));
    return { renewed: counts.reduce((n, c) => n + c.renewed, 0), ended: counts.reduce((n, c) => n + c.ended, 0) };
  }
}

/** Why a session ends when an administrator bans its address (as its record says). */
export const BANNED_BY_ADMIN = 'address banned by an administrator';

/**
 * Ends the live sessions from `address`, or from within it (an IPv6 network
 * of `ipv6Prefix` bits, as bans name one): how many. For a ban an
 * administrator made, on this node (admin API) or on another (its notice).
 */
export async function endSessionsFrom(sessions: LiveSessionsView, address: string, ipv6Prefix: number, reason: string, before: number | null = null): Promise<number> {
  const from = (await sessions.list()).filter((s) => (s.ip === address || sourceOf(s.ip, ipv6Prefix) === address) && loggedInBefore(s, before));
  const ended = await Promise.all(from.map((s) => sessions.end(s.id, reason)));
  return ended.filter(Boolean).length;
}

/**
 * Ends the live sessions of `user` (its stored name) with `reason`: how
 * many. `before` (unix ms on this node's clock): only those logged in
 * before then, for an end this node learns of late (another node's,
 * read when its notices connection listens again): the sessions that
 * logged in since are another's (a user made again under the name) or
 * came after the end was made, as the other nodes' did, and go on.
 */
export async function endUserSessions(sessions: LiveSessionsView, user: string, reason: string, before: number | null): Promise<number> {
  if (before === null) return sessions.endUser(user, reason);
  const of = (await sessions.list()).filter((s) => s.user === user && loggedInBefore(s, before));
  const ended = await Promise.all(of.map((s) => sessions.end(s.id, reason)));
  return ended.filter(Boolean).length;
}

/** Whether session `s` was logged in at `before` (null: any live session is). */
function loggedInBefore(s: LiveSessionInfo, before: number | null): boolean {
  return before === null || Date.parse(s.since) <= before;
}
