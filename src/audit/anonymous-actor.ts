import { ANONYMOUS } from '../session/account.js';
import type { Actor } from './events.js';

/**
 * Whether the actor of an audit record is an anonymous FTP login, for those
 * that see only the record (the xferlog, the hooks' queue shares), told
 * whether ftp.anonymous is on. The record carries the stored name, not how
 * the login was made. With anonymous FTP on, the account of that name is the
 * anonymous login's alone: the start refuses a user of it with a password or
 * key (users/anonymous.ts), and nobody can give it one (users/admin.ts).
 * With it off nobody is anonymous: a user named `anonymous` before the name
 * was reserved logs in with its own password or key, and was taken for
 * anonymous FTP by its name (its transfers marked `a`, a share of the hook
 * queue per address: found by a review).
 */
export function anonymousActor(actor: Pick<Actor, 'user'>, anonymousFtp: boolean): boolean {
  return anonymousFtp && actor.user === ANONYMOUS;
}
