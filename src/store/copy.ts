import { settingsOf } from './records.js';
import type { Store } from './store.js';

export interface CopyReport {
  users: number;
  keys: number;
  bans: number;
  /** Admin tokens of the source, by name: not copied (see copyStore). */
  tokensNotCopied: string[];
}

/**
 * Copy one Store into another that is empty, through the Store interface so
 * any pair of databases works (`sluice store migrate-from-sqlite`): every
 * user with its password hash, settings, address rules, keys, directory
 * permissions and usage, and every ban row (past ones too: their count makes
 * the next ban longer). Times the interface only sets to "now" (when a user
 * or key was created, when a ban began) become the time of the copy, and last
 * logins are not copied (none until the user's next). Admin tokens are not copied: the store hands out no token's
 * hash, by design, so they are listed to be created again.
 *
 * The source is only read. On failure what was written to the target is
 * removed again (the error says if that failed too), so the copy can be retried.
 */
export async function copyStore(from: Store, to: Store): Promise<CopyReport> {
  await requireEmpty(to);
  const created: number[] = [];
  const banned: string[] = [];
  const report: CopyReport = { users: 0, keys: 0, bans: 0, tokensNotCopied: [] };
  try {
    for (const user of await from.users.all()) {
      const keys = await from.users.keys(user.id);
      const copy = await to.users.create(user.name, user.passwordHash, settingsOf(user), keys);
      created.push(copy.id);
      for (const d of user.dirPermissions) await to.users.setDirPermissions(copy.id, d.path, d.permissions);
      await to.users.setUsage(copy.id, user.usedBytes, user.usedFiles);
      report.users++;
      report.keys += keys.length;
    }
    for (const ban of await from.bans.active(0)) {
      await to.bans.put(ban.address, ban.until, ban.count, ban.reason);
      banned.push(ban.address);
      report.bans++;
    }
  } catch (err) {
    const undone = await undo(to, created, banned);
    throw new Error(`copy failed: ${(err as Error).message}; ${undone
      ? 'nothing of it was kept in the target'
      : 'the target holds part of it, empty it before trying again'}`, { cause: err });
  }
  report.tokensNotCopied = (await from.tokens.all()).map((t) => t.name);
  return report;
}

/** Throws unless `to` holds nothing copyStore would copy into it: checked before the source is opened (sluice store). */
export async function requireEmpty(to: Store): Promise<void> {
  // A ban "in force at time 0" is every ban row: each ends after 1970 or never.
  const [users, bans, tokens] = await Promise.all([to.users.count(), to.bans.active(0), to.tokens.all()]);
  if (users + bans.length + tokens.length > 0) {
    throw new Error(`the target store is not empty (${users} users, ${bans.length} bans, ${tokens.length} admin tokens): copy into an empty database only`);
  }
}

/** Remove what a failed copy wrote; false when some of it could not be removed. */
async function undo(to: Store, users: number[], bans: string[]): Promise<boolean> {
  const results = await Promise.allSettled([...users.map((id) => to.users.remove(id)), ...bans.map((a) => to.bans.remove(a))]);
  return results.every((r) => r.status === 'fulfilled');
}
