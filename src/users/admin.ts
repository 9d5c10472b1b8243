import { mkdir, readdir, rmdir, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ANONYMOUS_LOGINS, USER_NAME, permissionRulesOf, refusal } from '../auth/authenticator.js';
import { parseCidr } from '../auth/ip-rules.js';
import type { PasswordHasher } from '../auth/passwords.js';
import { parsePublicKey, weakKey } from '../auth/public-keys.js';
import { PROTOCOLS, type Protocol } from '../session/account.js';
import { resolveVirtual } from '../session/paths.js';
import { ServerPlaces, homeNesting, realPlaceAsync, realPlacesOf, type ServerFile } from '../session/storage/server-places.js';
import { outlivesHome, type LiveSessionInfo } from '../session/live.js';
import { DEFAULT_PERMISSIONS, parsePermissions, rulesOfList, takesAnyAway, type Permission } from '../session/permissions.js';
import type { NewKey, PublicKeyRecord, UserRecord, UserSettings } from '../store/records.js';
import { StoreConflict, StoreUnavailable, StoreUserGone, type HomeCheck, type UserRepository } from '../store/store.js';
import { firstUnsafeChar } from '../session/unsafe-chars.js';
import { errnoWords } from '../errno-words.js';
import { AdminError, NoSuchUser, NotStored } from './errors.js';
import { expiryOutside } from './expiry.js';

/**
 * A new user's name. The anonymous FTP logins (`anonymous`, `ftp`, in any
 * case) are refused whether or not ftp.anonymous is on now: with it on, a
 * user of either name stops the server from starting (anonymous.ts), so
 * one made while it is off would break its later enabling.
 */
export function validateUserName(name: string): string {
  if (!USER_NAME.test(name)) {
    throw new AdminError(`invalid user name "${name}": 1-64 of letters, digits, . _ - and starting with a letter or digit`);
  }
  if (isAnonymousLogin(name)) throw new AdminError(`"${name}" is reserved for anonymous FTP (ftp.anonymous): choose another name`);
  return name;
}

/** A name anonymous FTP logs in with, in any case. */
export function isAnonymousLogin(name: string): boolean {
  return ANONYMOUS_LOGINS.includes(name.toLowerCase());
}

export function parseProtocols(text: string): Protocol[] {
  const out = new Set<Protocol>();
  for (const word of text.split(',').map((w) => w.trim()).filter((w) => w !== '')) {
    if (!(PROTOCOLS as readonly string[]).includes(word)) {
      throw new AdminError(`unknown protocol "${word}" (one of: ${PROTOCOLS.join(', ')})`);
    }
    out.add(word as Protocol);
  }
  if (out.size === 0) throw new AdminError('at least one protocol is needed');
  return [...out];
}

export function parsePerms(text: string): Permission[] {
  // An empty list (`--perms "$UNSET"`, `--perms ,`) took every permission away without a word (found by a
  // hostile-input review): that is said with `none`.
  if (text.split(',').every((w) => w.trim() === '')) throw new AdminError(`"${text}" names no permission: give none to take every permission away`);
  try {
    return parsePermissions(text);
  } catch (err) {
    throw new AdminError((err as Error).message);
  }
}

export function parseCidrs(texts: readonly string[]): string[] {
  try {
    return texts.map(parseCidr);
  } catch (err) {
    throw new AdminError((err as Error).message);
  }
}

/**
 * No home or key comment may hold the characters no client path may
 * (session/unsafe-chars.ts): printed by `sluice user list` they would make
 * fake rows or drive the terminal.
 */
function refuseUnprintable(what: string, text: string): void {
  const c = firstUnsafeChar(text);
  if (c !== null) throw new AdminError(`${what} holds the control or invisible character U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`);
  refuseNotUtf8(what, text);
}

/**
 * What a byte that is not UTF-8 becomes when read (a Latin-1 terminal, file
 * or argument): every such byte would be the same character. A password so
 * read would log in for any other; a home (`--home $'/srv/donn\xe9es'`) was
 * made a directory no one named (found by an operator-side review).
 */
function refuseNotUtf8(what: string, text: string): void {
  if (text.includes('\uFFFD')) throw new AdminError(`${what} is not UTF-8 (it holds U+FFFD, what bytes that are not UTF-8 are read as): give it in UTF-8`);
  refuseLoneSurrogate(what, text);
}

/** Half of a UTF-16 pair without its other half (a JSON body may send one, `\ud800`). */
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * UTF-8 has no form for a lone surrogate: written out it becomes U+FFFD, as
 * every other one does, so two homes of different text would be one
 * directory on disk, and two passwords one password (found by a review: a
 * password set to `secret-pw\ud800\udbff` let in `secret-pw` and any two
 * bytes that are not UTF-8).
 */
function refuseLoneSurrogate(what: string, text: string): void {
  if (LONE_SURROGATE.test(text)) throw new AdminError(`${what} holds half of a UTF-16 surrogate pair, which UTF-8 cannot hold: give it in UTF-8`);
}

/**
 * A home as given: absolute (relative to what? the server's directory is
 * not the administrator's: the CLI resolves a relative one against its own
 * before), no control characters (see firstUnsafeChar). `stored`: the
 * user's home now, taken again as it stands (a client sending back what it
 * read): one stored before U+FFFD was refused names the directory made for
 * it then, and was refused as "not UTF-8" with the change it came with
 * (found by a review of that refusal).
 */
export function validateHome(text: string, stored?: string): string {
  if (text !== stored) refuseUnprintable('the home', text);
  if (!isAbsolute(text)) throw new AdminError(`home "${text}" must be an absolute path`);
  return text;
}

export function parseKey(text: string): NewKey {
  let key: NewKey;
  try {
    key = parsePublicKey(text);
  } catch (err) {
    throw new AdminError(`public key: ${(err as Error).message}`);
  }
  refuseUnprintable('the key\'s comment', key.comment);
  return key;
}

/** An expiry as a date-time text; what no Date can hold (a leap second, an impossible day) is refused, never taken for "never". */
export function parseExpiresAt(text: string): Date {
  const at = new Date(text);
  if (!Number.isFinite(at.getTime())) throw new AdminError(`"${text}" is not a date-time sluice can keep (a leap second, or a day the month lacks?)`);
  const outside = expiryOutside(at);
  if (outside !== null) throw new AdminError(`"${text}" is, in UTC, ${outside}`);
  return at;
}

/** An expiry given as a Date, whatever gave it: an Invalid Date would be stored as NULL, "never"; one outside the years 0000 to 9999 in UTC no client reads back. */
function checkExpiry(at: Date | null | undefined): void {
  if (at && !Number.isFinite(at.getTime())) throw new AdminError('expiry: not a valid date');
  const outside = at ? expiryOutside(at) : null;
  if (outside !== null) throw new AdminError(`expiry ${at?.toISOString()}: ${outside}`);
}

/**
 * What a change takes away that the user's live sessions must not outlive:
 * the reason they end with (the words PostgreSQL's trigger tells every node,
 * migrations/postgres/007_user_revoked.sql), or null.
 */
export function revokedBy(patch: Partial<UserSettings>, now = Date.now()): 'user disabled' | 'user expired' | null {
  if (patch.enabled === false) return 'user disabled';
  if (patch.expiresAt && patch.expiresAt.getTime() <= now) return 'user expired';
  return null;
}

/** Does `patch` change what a login is checked against (refusal() in the authenticator)? */
export function changesLoginRules(patch: Partial<UserSettings>): boolean {
  return patch.protocols !== undefined || patch.requireTls !== undefined || patch.allowIps !== undefined || patch.denyIps !== undefined || patch.requireKey !== undefined;
}

/** The live sessions of `user` that its rules, as changed, would refuse now (as refusal() refuses a login). */
export function refusedNow(user: UserRecord, live: readonly LiveSessionInfo[]): LiveSessionInfo[] {
  return live.filter((s) => s.user === user.name && refusal(user, s.protocol, s.ip, s.method) !== null);
}

/**
 * Why live session `live` must not outlive its user as stored now (`user`,
 * null when no user has its name any more), or null when it may go on: the
 * key its login proved is gone, an administrator set an expiry from before it,
 * the user's rules would refuse its login now, the home one of its channels
 * serves is no longer the user's, or a permission one of them holds is
 * taken away. What a node checks its sessions by when a user changed on
 * another node or in the CLI, where the change was not its own to act on.
 * An expiry that merely came ends nothing (SECURITY.md).
 */
export function outlivedBy(user: UserRecord | null, live: LiveSessionInfo, keys: readonly string[] | null = null): string | null {
  if (!user || user.id !== live.userId) return 'user removed by an administrator';
  // What the revocation notices say (migrations/postgres/007), for a look after notices went unheard (the
  // notices connection lost): found by a review, such a session outlived its key's removal, and an expiry
  // set already past. `keys`: the user's key fingerprints as stored, when read (a session logged in by one).
  if (live.key !== null && keys !== null && !keys.includes(live.key)) return 'key removed by an administrator';
  // An expiry from before the session began: its login would have been refused, so an administrator set it
  // since, already past. One that came after it began ends nothing, even once the user changed otherwise
  // (a review of b7455c2 found that rule ending such sessions on PostgreSQL alone); one set past but after
  // the session began is told by its notice alone.
  if ((user.expiresAt?.getTime() ?? Infinity) <= Date.parse(live.since)) return 'user expired by an administrator';
  const refused = refusal({ ...user, expiresAt: null }, live.protocol, live.ip, live.method);
  if (refused === 'disabled') return 'user disabled by an administrator';
  if (refused !== null) return 'rules changed by an administrator';
  for (const home of live.homes) {
    const moved = outlivesHome({ home }, user);
    if (moved !== null) return moved;
  }
  const now = permissionRulesOf(user);
  if (live.permissions.some((held) => takesAnyAway(rulesOfList(held), now))) return 'permissions taken away by an administrator';
  return null;
}

/** A clean virtual directory for a permission override; `..` tricks fold away before storage. */
export function parseVirtualDir(text: string): string {
  if (!text.startsWith('/')) throw new AdminError(`"${text}" must be an absolute virtual path such as /incoming`);
  // Stored, it would be the U+FFFD of bytes that are not UTF-8, not the path the reply names.
  refuseLoneSurrogate(`"${text}"`, text);
  try {
    return resolveVirtual('/', text);
  } catch (err) {
    throw new AdminError(`"${text}": ${(err as Error).message}`);
  }
}

export interface NewUser {
  name: string;
  password: string | null;
  keys: NewKey[];
  home?: string | undefined;
  permissions?: Permission[] | undefined;
  protocols?: Protocol[] | undefined;
  quotaBytes?: number | undefined;
  quotaFiles?: number | undefined;
  rateUp?: number | null | undefined;
  rateDown?: number | null | undefined;
  scan?: boolean | null | undefined;
  requireTls?: boolean | undefined;
  requireKey?: boolean | undefined;
  allowIps?: string[] | undefined;
  denyIps?: string[] | undefined;
  expiresAt?: Date | null | undefined;
}

/**
 * A key as administration shows it: the fingerprint, not the blob; and
 * `refused`, why no login takes it (weakKey: one stored before such keys
 * were refused), null when logins do.
 */
export type KeyView = Omit<PublicKeyRecord, 'blob'> & { refused: string | null };

/** A user as administration shows it: whether a password is set, never its hash. */
export type UserView = Omit<UserRecord, 'passwordHash'> & { password: 'set' | 'none'; keys: KeyView[] };

/**
 * User administration: every change the CLI (and any later API) makes to
 * users goes through here, so each is validated the same way, then written once.
 */
export class UserAdmin {
  private readonly serverPlaces: ServerPlaces;

  /**
   * @param serverFiles the server's own files and directories (app.ts
   * serverFilesOf): no home may be, hold or lie in one, except under
   * dataDir/homes, where the default homes are.
   */
  constructor(
    private readonly store: UserRepository,
    private readonly hasher: PasswordHasher,
    private readonly dataDir: string,
    serverFiles: readonly ServerFile[],
  ) {
    // Resolved here, at start, as the logins' check is: not on the event loop at each change.
    this.serverPlaces = new ServerPlaces(dataDir, serverFiles);
  }

  /**
   * Whoever may set a home would otherwise control the server (ServerPlaces);
   * the server checks again at each login. Nor may it lie in another user's
   * home or hold one (homeNesting); `self`, the user whose home it becomes,
   * is not another. Checked here before anything is made, and again by the
   * store as it writes the home (homeApart).
   */
  private async checkHome(home: string, self?: number): Promise<HomeLookups> {
    const realHome = await realPlaceAsync(home);
    const why = this.serverPlaces.conflict(realHome);
    if (why) throw new AdminError(`home ${home} ${why}`);
    const stored = await this.store.all();
    const realOf = await realPlacesOf(stored.map((u) => u.home));
    homeApart(home, realHome, realOf)(stored.filter((u) => u.id !== self));
    return realOf;
  }

  /**
   * The store's check of `home`, made once the home is: where it leads is
   * looked up again, as it may have been made, or replaced, since checkHome.
   */
  private async storeCheck(home: string, realOf: HomeLookups): Promise<HomeCheck> {
    return homeApart(home, await realPlaceAsync(home), realOf);
  }

  /** unmakeHome, leaving every home stored now: an add or change that won a race among them. */
  private async unmake(home: string, first: string): Promise<void> {
    await unmakeHome(home, first, new Set((await this.store.all().catch(() => [])).map((u) => resolve(u.home))));
  }

  async require(name: string): Promise<UserRecord> {
    const user = await this.store.get(name);
    if (!user) throw new NoSuchUser(name);
    return user;
  }

  /** Refuses a name add() would refuse for itself: asked first by the CLI, before it prompts for a password. */
  async refuseName(name: string): Promise<void> {
    validateUserName(name);
    if (await this.store.get(name)) throw new AdminError(`user "${name}" already exists`);
  }

  async add(u: NewUser): Promise<UserRecord> {
    await this.refuseName(u.name);
    if (u.password === null && u.keys.length === 0) throw new AdminError('a user needs a password or a public key');
    const twice = repeatedKey(u.keys);
    // Else the store's unique index refuses the second, and that reads as a taken name.
    if (twice) throw new AdminError(`key ${u.keys[twice[1]]?.fingerprint} is given twice`);
    checkExpiry(u.expiresAt);
    const home = u.home === undefined ? join(this.dataDir, 'homes', u.name) : resolve(validateHome(u.home));
    if (!isAbsolute(home)) throw new AdminError(`home "${u.home}" must be a path`);
    if (u.home === undefined) await refuseLeftHome(home);
    const realOf = await this.checkHome(home);
    const settings: UserSettings = {
      home,
      enabled: true,
      expiresAt: u.expiresAt ?? null,
      protocols: u.protocols ?? [...PROTOCOLS],
      requireTls: u.requireTls ?? false,
      requireKey: u.requireKey ?? false,
      permissions: u.permissions ?? [...DEFAULT_PERMISSIONS],
      quotaBytes: u.quotaBytes ?? 0,
      quotaFiles: u.quotaFiles ?? 0,
      rateUp: u.rateUp ?? null,
      rateDown: u.rateDown ?? null,
      scan: u.scan ?? null,
      allowIps: u.allowIps ?? [],
      denyIps: u.denyIps ?? [],
    };
    const hash = u.password === null ? null : await this.hasher.hash(u.password);
    const createdHome = await makeHome(home);
    try {
      return await this.store.create(u.name, hash, settings, u.keys, await this.storeCheck(home, realOf));
    } catch (err) {
      // Another administrator (or node) added the same name since the check above: the new
      // home is removed unless it is the one that user got (the same path, made by either).
      const winner = err instanceof StoreConflict ? await this.store.get(u.name) : null;
      if (createdHome !== null && winner?.home !== home) await this.unmake(home, createdHome);
      // The store's 'not now' stays itself: the API answers it 503, not 400 (found by a review).
      if (err instanceof AdminError || err instanceof StoreUnavailable) throw err;
      if (err instanceof StoreConflict) throw new AdminError(`user "${u.name}" already exists`);
      throw new AdminError(`could not add user: ${(err as Error).message}`);
    }
  }

  /** Settings, and a new password when given: everything is checked before anything is written. */
  async update(name: string, patch: Partial<UserSettings>, password?: string): Promise<UserRecord> {
    const user = await this.require(name);
    checkExpiry(patch.expiresAt);
    await this.refuseAnonymousChange(user, changedFromConfig(user, patch));
    if (password !== undefined) await this.checkCredentialsAllowed(user);
    const change = { ...patch };
    let createdHome: string | null = null;
    let homeCheck: HomeCheck | undefined;
    if (patch.home !== undefined) {
      change.home = resolve(validateHome(patch.home, user.home));
      const realOf = await this.checkHome(change.home, user.id);
      createdHome = await makeHome(change.home);
      homeCheck = await this.storeCheck(change.home, realOf);
    }
    const hash = password === undefined ? null : await this.hasher.hash(password);
    // Only what is changed goes to the store, which merges it under the row's lock; the new password in the
    // same transaction (found by a review: written apart, a password the store refused left the settings changed).
    if (Object.keys(change).length > 0) {
      let written = false;
      try {
        written = await this.store.update(user.id, change, homeCheck, hash ?? undefined);
      } finally {
        // Refused, failed, or the user removed meanwhile: the home made for it goes.
        if (!written && createdHome !== null) await this.unmake(change.home as string, createdHome);
      }
      if (!written) throw new NoSuchUser(name);
    } else if (hash !== null) await this.store.setPasswordHash(user.id, hash);
    return this.require(name);
  }

  /**
   * The anonymous account (a reserved name, no credentials, made by
   * anonymous.ts) never gets a password or key: with one, the next start
   * with ftp.anonymous on is refused. A user of that name made before the
   * names were reserved, with credentials already, keeps them changeable.
   */
  private async checkCredentialsAllowed(user: UserRecord): Promise<void> {
    if (!(await this.isAnonymousAccount(user))) return;
    throw new AdminError(`"${user.name}" is the anonymous FTP account: it takes no password or key (anonymous logins need none)`);
  }

  /** The account anonymous.ts made (a reserved name, no credentials), not a user of that name made before. */
  private async isAnonymousAccount(user: UserRecord): Promise<boolean> {
    return isAnonymousLogin(user.name) && user.passwordHash === null && (await this.store.keys(user.id)).length === 0;
  }

  /**
   * What ftp.anonymous sets on its account at every start (anonymous.ts,
   * `what`): changed here, it held only until then, and meanwhile could
   * break anonymous FTP (found by an operator's walk: `--protocols sftp` was
   * taken, and every anonymous login refused). Its quota, rates, scanning and
   * address lists are the administrator's, and disabling it stops it until
   * the next start.
   */
  private async refuseAnonymousChange(user: UserRecord, what: readonly string[]): Promise<void> {
    if (what.length === 0 || !(await this.isAnonymousAccount(user))) return;
    throw new AdminError(`"${user.name}" is the anonymous FTP account: ftp.anonymous in the config sets its ${what.join(', ')} at every start; change it there`);
  }

  async setPassword(name: string, password: string): Promise<void> {
    const user = await this.require(name);
    await this.checkCredentialsAllowed(user);
    await this.store.setPasswordHash(user.id, await this.hasher.hash(password));
  }

  async remove(name: string): Promise<void> {
    await this.store.remove((await this.require(name)).id);
  }

  async list(): Promise<UserView[]> {
    return Promise.all((await this.store.all()).map((u) => this.view(u)));
  }

  async show(name: string): Promise<UserView> {
    return this.view(await this.require(name));
  }

  async addKey(name: string, key: NewKey): Promise<void> {
    const user = await this.require(name);
    await this.checkCredentialsAllowed(user);
    refuseUnprintable('the key\'s comment', key.comment);
    // The store's unique index would refuse it too, but as a constraint error, not a sentence.
    try {
      await this.store.addKey(user.id, key);
    } catch (err) {
      if (err instanceof StoreConflict) throw new AdminError(`${name} already has key ${key.fingerprint}`);
      // Removed since it was read above (another node, the CLI, another request).
      if (err instanceof StoreUserGone) throw new NoSuchUser(name);
      throw err;
    }
  }

  async removeKey(name: string, fingerprint: string): Promise<void> {
    if (!(await this.store.removeKey((await this.require(name)).id, fingerprint))) throw new NotStored(`${name} has no key ${fingerprint}`);
  }

  /**
   * The permissions of one directory and below; null drops its override so
   * it inherits again. For / these are the user's own permissions, which
   * have nothing to inherit from. Returns the clean path stored.
   */
  async setDirPermissions(name: string, dir: string, permissions: Permission[] | null): Promise<string> {
    const path = parseVirtualDir(dir);
    const user = await this.require(name);
    if (path === '/') {
      if (permissions === null) throw new AdminError('the home (/) has no parent to inherit from');
      await this.update(name, { permissions });
      return path;
    }
    await this.refuseAnonymousChange(user, ['directory permissions']);
    let changed: boolean;
    try {
      changed = await this.store.setDirPermissions(user.id, path, permissions);
    } catch (err) {
      // Removed since it was read above (another node, the CLI, another request).
      if (err instanceof StoreUserGone) throw new NoSuchUser(name);
      throw err;
    }
    if (!changed) throw new NotStored(`no override on ${path}`);
    return path;
  }

  private async view(user: UserRecord): Promise<UserView> {
    const { passwordHash, ...rest } = user;
    const keys = (await this.store.keys(user.id)).map(({ blob, ...key }) => ({ ...key, refused: weakKey(blob) }));
    return { ...rest, password: passwordHash ? 'set' : 'none', keys };
  }
}

/** Where homes lead, looked up off the event loop (realPlacesOf). */
type HomeLookups = (path: string) => string;

/**
 * The store's HomeCheck for `home`: no other user's home, as stored when it
 * is written, may hold it or lie in it. `realHome`: where `home` leads;
 * `realOf`: where the homes looked up before lead (see realPlacesOf); one
 * stored since is looked up in the check.
 */
function homeApart(home: string, realHome: string, realOf: HomeLookups): HomeCheck {
  return (others) => {
    const why = homeNesting(home, realHome, others, realOf);
    if (why) throw new AdminError(`home ${home} ${why}`);
  };
}

/**
 * A user removed keeps their home, files and all (the store forgets the user,
 * not the data). A new user of the same name got it by default, and with it
 * every file of the one before, and was charged for none of them until the
 * next start's recount (found by an operator's review). The default home is
 * taken only while it is missing or empty; a home given on purpose may hold
 * files (a customer's directory moved in), which the next start counts.
 */
async function refuseLeftHome(home: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(home);
  } catch {
    return; // missing, or not a directory: makeHome says which
  }
  if (names.length > 0) {
    throw new AdminError(`home ${home} already holds files (left by a removed user?): move them away, or name that home explicitly (--home, or "home" in the API) to take them over`);
  }
}

/**
 * Create the home if missing (owner-only), with any directories above it that
 * are missing. Returns the first directory it created (the home, or the
 * highest parent it made), null if the home was there. Refuses a file in the way.
 */
export async function makeHome(home: string): Promise<string | null> {
  try {
    if ((await stat(home)).isDirectory()) return null;
    throw new AdminError(`home ${home} exists and is not a directory`);
  } catch (err) {
    if (err instanceof AdminError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw homeError(home, err);
  }
  try {
    // Made by another request since the look above: nothing of it is ours to take away.
    return (await mkdir(home, { recursive: true, mode: 0o750 })) ?? null;
  } catch (err) {
    throw homeError(home, err);
  }
}

/**
 * Undo makeHome for a user that was not made: the home, then each parent it
 * made, up to `first`, while empty and no user's home (`kept`). Never a
 * directory with something in it, nor a stored home: in a race of nested
 * homes (HomeCheck) the winner's home may be inside this one, or be a
 * parent this one made (found by a review: a refused inner add removed the
 * empty home of the outer user that won).
 */
async function unmakeHome(home: string, first: string, kept: ReadonlySet<string>): Promise<void> {
  for (let dir = home; !kept.has(dir); dir = dirname(dir)) {
    try {
      await rmdir(dir);
    } catch {
      return;
    }
    if (dir === first || dirname(dir) === dir) return;
  }
}

/** A home the service account cannot make or reach: the administrator's mistake (400, exit 2), one line, no stack. */
function homeError(home: string, err: unknown): AdminError {
  return new AdminError(`home "${home}": ${errnoWords(err)}`);
}

/** The first key given again, as the indexes [earlier, later], or null; by fingerprint, as the store's unique index compares them. */
export function repeatedKey(keys: readonly NewKey[]): [number, number] | null {
  const seen = new Map<string, number>();
  for (const [i, k] of keys.entries()) {
    const first = seen.get(k.fingerprint);
    if (first !== undefined) return [first, i];
    seen.set(k.fingerprint, i);
  }
  return null;
}

export function validatePassword(password: string): string {
  refuseNotUtf8('the password', password);
  if (password.length < 8) throw new AdminError('password too short (at least 8 characters)');
  if (password.length > 1024) throw new AdminError('password too long (at most 1024 characters)');
  return password;
}

/** The settings of `patch` that anonymous.ts sets, where they differ from `user`'s: given as they are, they change nothing (a client may send back the whole record it read). */
function changedFromConfig(user: UserRecord, patch: Partial<UserSettings>): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(Array.isArray(a) ? [...a].sort() : a) === JSON.stringify(Array.isArray(b) ? [...b].sort() : b);
  const words = { home: 'home', expiresAt: 'expiry', protocols: 'protocols', requireTls: 'TLS requirement', requireKey: 'key requirement', permissions: 'permissions' } as const;
  return (Object.keys(words) as (keyof typeof words)[]).filter((k) => patch[k] !== undefined && !same(patch[k], user[k])).map((k) => words[k]);
}
