import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ANONYMOUS } from '../session/account.js';
import type { Config } from '../config/schema.js';
import { homeNesting, realPlaceAsync, realPlacesOf, type ServerPlaces } from '../session/storage/server-places.js';
import { settingsOf, type UserRecord, type UserSettings } from '../store/records.js';
import { StoreConflict, type HomeCheck, type UserRepository } from '../store/store.js';
import { makeHome, parseVirtualDir } from './admin.js';
import { AdminError } from './errors.js';

type AnonymousSettings = Config['ftp']['anonymous'];

/**
 * Anonymous FTP is an account like any other, made from the configuration at
 * each start: one home (the root), read-only (list, download) with an
 * upload-only drop box at `incoming` (no listing, no download, no overwrite,
 * no rename: what was uploaded cannot be fetched back or replaced), FTP only,
 * no password and no key, so no other way in leads to it. Being stored, it
 * has the quota, bandwidth limits and address rules `sluice user set
 * anonymous` gives it, and the session layer treats it like every user.
 * A real user named `anonymous` or `ftp` (one with credentials) is never
 * taken over: the start is refused instead.
 */
export async function provisionAnonymous(users: UserRepository, settings: AnonymousSettings, places: ServerPlaces): Promise<Provisioned> {
  try {
    return await provision(users, settings, places);
  } catch (err) {
    // Another node sharing the store made the account at the same moment: theirs is updated instead.
    if (!(err instanceof StoreConflict)) throw err;
    return provision(users, settings, places);
  }
}

/**
 * `madeRoot`: the root did not exist and was made, empty (a typo in its path
 * shows so). `unboundedUploads`: strangers may upload into `incoming` with no
 * quota on the account, so they can fill the disk. No quota is set by
 * default because the quota counts the whole root, whose published files
 * only the operator can size; serve says so at every start instead.
 */
interface Provisioned {
  madeRoot: string | null;
  unboundedUploads: boolean;
}

async function provision(users: UserRepository, settings: AnonymousSettings, places: ServerPlaces): Promise<Provisioned> {
  const existing = await users.get(ANONYMOUS);
  if (existing && (await hasCredentials(users, existing))) {
    if (!settings.enabled) return { madeRoot: null, unboundedUploads: false };
    throw new AdminError(`user "${ANONYMOUS}" has a password or keys: rename it (or remove it) before enabling ftp.anonymous`);
  }
  if (!settings.enabled) {
    // Left from a run with anonymous FTP on: nothing logs in with it while it is off.
    if (existing?.enabled) await users.update(existing.id, { enabled: false });
    return { madeRoot: null, unboundedUploads: false };
  }
  const ftp = await users.get('ftp');
  if (ftp) throw new AdminError('user "ftp" exists, and with ftp.anonymous enabled "ftp" is an anonymous login: rename or remove that user');
  const incoming = settings.incoming === '' ? '' : parseVirtualDir(settings.incoming);
  if (incoming !== settings.incoming) throw new AdminError(`ftp.anonymous.incoming: "${settings.incoming}" is not a clean path (try "${incoming}")`);
  // Else a user holding the root could put a link in its place, and anonymous logins would serve wherever it leads.
  // Looked at here so a refused start makes no directory, and again in the store's transaction (rootApart)
  // for a user added meanwhile, by the CLI or another node, as every home is checked.
  const stored = await users.all();
  const realOf = await realPlacesOf(stored.map((u) => u.home));
  const realRoot = await realPlaceAsync(settings.root);
  rootApart(settings.root, realRoot, realOf)(stored.filter((u) => u.name !== ANONYMOUS));
  // As every home: else the start went well and each anonymous login failed on it (found by an operator's review).
  const conflict = places.conflict(realRoot);
  if (conflict) throw new AdminError(`ftp.anonymous.root: ${settings.root} ${conflict}`);
  const madeRoot = (await makeHome(settings.root)) === null ? null : settings.root;
  // Where the root leads once it is made, for the store's check.
  const apart = rootApart(settings.root, await realPlaceAsync(settings.root), realOf);
  if (incoming !== '') await mkdir(join(settings.root, incoming), { recursive: true, mode: 0o750 });
  const wanted: UserSettings = {
    ...(existing ? settingsOf(existing) : { quotaBytes: 0, quotaFiles: 0, rateUp: null, rateDown: null, scan: null, allowIps: [], denyIps: [] }),
    home: settings.root,
    enabled: true,
    expiresAt: null,
    protocols: ['ftp'],
    requireTls: false,
    requireKey: false,
    permissions: ['list', 'download'],
  };
  const id = existing ? existing.id : (await users.create(ANONYMOUS, null, wanted, [], apart)).id;
  if (existing && !(await users.update(id, wanted, apart))) throw new StoreConflict(`user "${ANONYMOUS}" was removed meanwhile`);
  for (const d of existing?.dirPermissions ?? []) if (d.path !== settings.incoming) await users.setDirPermissions(id, d.path, null);
  if (settings.incoming !== '') await users.setDirPermissions(id, settings.incoming, ['upload']);
  return { madeRoot, unboundedUploads: incoming !== '' && (wanted.quotaBytes === 0 || wanted.quotaFiles === 0) };
}

/** The check of the anonymous root against the homes of users: none may hold it or lie in it. */
function rootApart(root: string, realRoot: string, realOf: (path: string) => string): HomeCheck {
  return (others) => {
    const nested = homeNesting(root, realRoot, others, realOf);
    if (nested) throw new AdminError(`ftp.anonymous.root ${root} ${nested}: anonymous FTP needs a root of its own`);
  };
}

async function hasCredentials(users: UserRepository, user: UserRecord): Promise<boolean> {
  return user.passwordHash !== null || (await users.keys(user.id)).length > 0;
}
