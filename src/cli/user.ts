import { closeSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { ApiError, ifRunning, type Reach } from '../admin/client.js';
import type { LiveSessionInfo } from '../session/live.js';
import type { AdminServices } from '../admin-services.js';
import { PERMISSIONS } from '../session/permissions.js';
import { scanSettingIdle } from '../session/scanning.js';
import type { UserRecord, UserSettings } from '../store/records.js';
import {
  changesLoginRules,
  parseCidrs,
  parseKey,
  parsePerms,
  parseProtocols,
  parseVirtualDir,
  refusedNow,
  revokedBy,
  validatePassword,
  type UserView,
} from '../users/admin.js';
import { shown } from '../session/unsafe-chars.js';
import { UsageError, parse, parseCount, parseExpiry, parseSize } from './args.js';
import { generatePassword, passwordFromUser, readPasswordFromStdin } from './password-input.js';
import { textTable } from './table.js';

export const USER_HELP = `Usage: sluice user <command> ...

  add NAME [--home DIR] [--password-stdin | --generate-password] [--key FILE]
           [--perms LIST] [--protocols LIST] [--quota-bytes N] [--quota-files N]
           [--rate-up RATE] [--rate-down RATE] [--scan | --no-scan]
           [--require-tls] [--require-key] [--allow-ip CIDR]... [--deny-ip CIDR]...
           [--expires DATE]
  list [--json]
  show NAME [--json]
  passwd NAME [--password-stdin | --generate-password]
  set NAME [--home DIR] [--perms LIST] [--protocols LIST] [--quota-bytes N]
           [--quota-files N] [--rate-up RATE] [--rate-down RATE] [--scan | --no-scan]
           [--[no-]require-tls] [--[no-]require-key]
           [--allow-ip CIDR|any]... [--deny-ip CIDR|none]... [--expires DATE|never]
  disable NAME | enable NAME | remove NAME
                          (disable, remove, key remove, and set or perm where they refuse
                          a live session or take a permission from it, end those sessions;
                          set or perm that only give, the sessions take the new permissions:
                          on SQLite through the admin API when it is on and the server runs;
                          on PostgreSQL every node does it for its own, API or not)
  key add NAME FILE|-     key list NAME     key remove NAME FINGERPRINT
  perm NAME /PATH LIST    (LIST "inherit" drops the override)

Permissions: ${PERMISSIONS.join(', ')}, or "all" / "none".
Protocols: ftp, ftps, sftp (sftp admits legacy scp too). Sizes accept K, M, G, T suffixes.
RATE: bytes per second of each session (5M: 5 MiB/s), 0 for none, "default" for the
server's limits.rateUp / limits.rateDown.
With no password option, add and passwd prompt on a terminal or read a pipe.
`;

const SETTINGS = {
  home: { type: 'string' },
  perms: { type: 'string' },
  protocols: { type: 'string' },
  'quota-bytes': { type: 'string' },
  'quota-files': { type: 'string' },
  'rate-up': { type: 'string' },
  'rate-down': { type: 'string' },
  scan: { type: 'boolean' },
  'no-scan': { type: 'boolean' },
  'allow-ip': { type: 'string', multiple: true },
  'deny-ip': { type: 'string', multiple: true },
  expires: { type: 'string' },
} as const;

const PASSWORD = {
  'password-stdin': { type: 'boolean' },
  'generate-password': { type: 'boolean' },
} as const;

type SettingValues = {
  home?: string | undefined;
  perms?: string | undefined;
  protocols?: string | undefined;
  'quota-bytes'?: string | undefined;
  'quota-files'?: string | undefined;
  'rate-up'?: string | undefined;
  'rate-down'?: string | undefined;
  scan?: boolean | undefined;
  'no-scan'?: boolean | undefined;
  'allow-ip'?: string[] | undefined;
  'deny-ip'?: string[] | undefined;
  expires?: string | undefined;
};

/** Options common to add and set, validated before anything is written. */
function settingsFrom(v: SettingValues): Partial<UserSettings> {
  const out: Partial<UserSettings> = {};
  // Relative to where the command runs, as for any path given to a command (the API takes absolute ones only).
  if (v.home === '') throw new UsageError('--home: give a directory (an empty one resolved to the directory the command runs in)');
  if (v.home !== undefined) out.home = resolve(v.home);
  if (v.perms !== undefined) out.permissions = parsePerms(v.perms);
  if (v.protocols !== undefined) out.protocols = parseProtocols(v.protocols);
  if (v['quota-bytes'] !== undefined) out.quotaBytes = parseSize('quota-bytes', v['quota-bytes']);
  if (v['quota-files'] !== undefined) out.quotaFiles = parseCount('quota-files', v['quota-files']);
  if (v['rate-up'] !== undefined) out.rateUp = parseRate('rate-up', v['rate-up']);
  if (v['rate-down'] !== undefined) out.rateDown = parseRate('rate-down', v['rate-down']);
  if (v.scan && v['no-scan']) throw new UsageError('--scan and --no-scan exclude each other');
  if (v.scan || v['no-scan']) out.scan = Boolean(v.scan);
  if (v['allow-ip'] !== undefined) out.allowIps = addressList('--allow-ip', v['allow-ip'], 'any');
  if (v['deny-ip'] !== undefined) out.denyIps = addressList('--deny-ip', v['deny-ip'], 'none');
  if (v.expires !== undefined) out.expiresAt = parseExpiry(v.expires);
  return out;
}

async function choosePassword(v: { 'password-stdin'?: boolean | undefined; 'generate-password'?: boolean | undefined }) {
  if (v['password-stdin'] && v['generate-password']) {
    throw new UsageError('--password-stdin and --generate-password exclude each other');
  }
  if (v['generate-password']) return { password: generatePassword(), generated: true };
  const password = v['password-stdin'] ? await readPasswordFromStdin() : await passwordFromUser();
  return { password: validatePassword(password), generated: false };
}

/**
 * A public key is one line (the API takes 16 KiB): more than this is no key, and
 * is not read on (an endless pipe to `-`, /dev/zero, a log given by mistake
 * would be read until memory ran out).
 */
const MAX_KEY_FILE = 64 * 1024;

function readKeyFile(file: string): string {
  let fd: number | null = null;
  try {
    fd = file === '-' ? 0 : openSync(file, 'r');
    const buf = Buffer.alloc(MAX_KEY_FILE + 1);
    let size = 0;
    while (size < buf.length) {
      const n = readSync(fd, buf, size, buf.length - size, null);
      if (n === 0) break;
      size += n;
    }
    if (size > MAX_KEY_FILE) throw new UsageError(`key file ${file}: larger than ${MAX_KEY_FILE} bytes, not a public key`);
    return buf.toString('utf8', 0, size);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read key file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  } finally {
    if (fd !== null && fd !== 0) closeSync(fd);
  }
}

export async function userCommand(args: string[], open: () => Promise<AdminServices>, reach: Reach, out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help') {
    out(USER_HELP);
    return sub === undefined ? 2 : 0;
  }
  switch (sub) {
    case 'add': {
      const { values: v, positionals } = parse(rest, {
        ...SETTINGS,
        ...PASSWORD,
        key: { type: 'string' },
        'require-tls': { type: 'boolean' },
        'require-key': { type: 'boolean' },
      }, ['NAME']);
      const name = positionals[0] as string;
      const settings = settingsFrom(v);
      const keys = v.key !== undefined ? [parseKey(readKeyFile(v.key))] : [];
      const wantsPassword = v['password-stdin'] || v['generate-password'] || keys.length === 0;
      const s = await open();
      await s.admin.refuseName(name);
      const chosen = wantsPassword ? await choosePassword(v) : null;
      const user = await s.admin.add({
        name,
        password: chosen?.password ?? null,
        keys,
        home: settings.home,
        permissions: settings.permissions,
        protocols: settings.protocols,
        quotaBytes: settings.quotaBytes,
        quotaFiles: settings.quotaFiles,
        rateUp: settings.rateUp,
        rateDown: settings.rateDown,
        scan: settings.scan,
        requireTls: v['require-tls'],
        requireKey: v['require-key'],
        allowIps: settings.allowIps,
        denyIps: settings.denyIps,
        expiresAt: settings.expiresAt,
      });
      out(`added user ${user.name} (home ${user.home})\n`);
      if (chosen?.generated) out(`password: ${chosen.password}\n`);
      noteIdleScan(s.config, user.name, settings.scan, out);
      notePastExpiry(user.name, settings.expiresAt, out);
      return 0;
    }
    case 'list': {
      const { values: v } = parse(rest, { json: { type: 'boolean' } }, []);
      const users = await (await open()).admin.list();
      if (v.json) {
        out(JSON.stringify(users, null, 2) + '\n');
        return 0;
      }
      const rows = users.map((u) => [
        u.name,
        stateOf(u),
        u.protocols.join(','),
        u.lastLoginAt ? u.lastLoginAt.toISOString() : '-',
        u.home,
      ]);
      out(table(['NAME', 'STATE', 'PROTOCOLS', 'LAST LOGIN', 'HOME'], rows));
      return 0;
    }
    case 'show': {
      const { values: v, positionals } = parse(rest, { json: { type: 'boolean' } }, ['NAME']);
      const view = await (await open()).admin.show(positionals[0] as string);
      if (v.json) out(JSON.stringify(view, null, 2) + '\n');
      else out(describeUser(view));
      return 0;
    }
    case 'passwd': {
      const { values: v, positionals } = parse(rest, PASSWORD, ['NAME']);
      const name = positionals[0] as string;
      // Told like any change: a login verifying the old password as it is written then opens no session, nor
      // does a new SSH channel of a connection that logged in with it (Authenticator.refreshed).
      await mayTell(reach);
      const s = await open();
      await s.admin.require(name);
      const chosen = await choosePassword(v);
      await s.admin.setPassword(name, chosen.password);
      out(`password changed for ${name}${await toLiveSessions(reach, await s.admin.require(name), {})}\n`);
      if (chosen.generated) out(`password: ${chosen.password}\n`);
      return 0;
    }
    case 'set': {
      const { values: v, positionals } = parse(rest, {
        ...SETTINGS,
        'require-tls': { type: 'boolean' },
        'no-require-tls': { type: 'boolean' },
        'require-key': { type: 'boolean' },
        'no-require-key': { type: 'boolean' },
      }, ['NAME']);
      const patch = settingsFrom(v);
      if (v['require-tls'] || v['no-require-tls']) patch.requireTls = !v['no-require-tls'];
      if (v['require-key'] || v['no-require-key']) patch.requireKey = !v['no-require-key'];
      if (Object.keys(patch).length === 0) throw new UsageError('nothing to set; see sluice user --help');
      const name = positionals[0] as string;
      await mayTell(reach);
      const s = await open();
      const after = await s.admin.update(name, patch);
      out(`updated user ${name}${await toLiveSessions(reach, after, patch)}\n`);
      noteIdleScan(s.config, name, patch.scan, out);
      notePastExpiry(name, patch.expiresAt, out);
      return 0;
    }
    case 'enable':
    case 'disable':
    case 'remove': {
      const { positionals } = parse(rest, {}, ['NAME']);
      const name = positionals[0] as string;
      const done = `${sub === 'remove' ? 'removed' : sub + 'd'} user ${name}`;
      // Disabling or removing goes through the running server when there is one, which ends the user's live sessions at once.
      const path = `/users/${encodeURIComponent(name)}`;
      const reply = sub === 'enable' ? null : await ifRunning(reach, sub === 'remove' ? 'DELETE' : 'PATCH', path, sub === 'remove' ? undefined : { enabled: false });
      if (reply) {
        out(`${done}; ${(reply.body as { sessionsEnded: number }).sessionsEnded} live session(s) ended\n`);
        return 0;
      }
      const s = await open();
      if (sub === 'remove') await s.admin.remove(name);
      else await s.admin.update(name, { enabled: sub === 'enable' });
      out(`${done}\n`);
      return 0;
    }
    case 'key':
      return keyCommand(rest, open, reach, out);
    case 'perm': {
      const { positionals } = parse(rest, {}, ['NAME', '/PATH', 'LIST']);
      const [name, dir, list] = positionals as [string, string, string];
      // Argument errors are found before the database is opened.
      parseVirtualDir(dir);
      const perms = list === 'inherit' ? null : parsePerms(list);
      await mayTell(reach);
      const s = await open();
      const path = await s.admin.setDirPermissions(name, dir, perms);
      const done = perms === null ? `${name}: ${path} inherits again` : `${name}: ${path} -> ${perms.join(',') || 'none'}`;
      out(`${done}${await toLiveSessions(reach, await s.admin.require(name), {})}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown user command "${sub}"; see sluice user --help`);
  }
}

/**
 * Before a change the running server must then be told of (toLiveSessions):
 * a server this command cannot tell (its API on TCP and no token given, a
 * token refused) refuses the command before anything is written. Found by a
 * review: `user set bob --deny-ip ...` wrote the rule, then failed (exit 1)
 * to tell the server, and bob's session from that address went on.
 */
async function mayTell(reach: Reach): Promise<void> {
  await ifRunning(reach, 'GET', '/server');
}

/**
 * A change written to the store, told to the running server: the live
 * sessions it takes something from end (endLiveSessions), the others take
 * changed permissions at once, and logins under way read the user again.
 * What was done, for the command's line.
 */
async function toLiveSessions(reach: Reach, after: UserRecord, patch: Partial<UserSettings>): Promise<string> {
  // The recheck first, as the API tells before it ends (see LiveSessionsView.userChanged).
  const told = await ifRunning(reach, 'POST', `/users/${encodeURIComponent(after.name)}/sessions/recheck`);
  const { sessionsRenewed = 0, sessionsEnded = 0 } = (told?.body ?? {}) as { sessionsRenewed?: number; sessionsEnded?: number };
  const ended = await endLiveSessions(reach, after, patch);
  const total = ended === null && sessionsEnded === 0 ? null : (ended ?? 0) + sessionsEnded;
  return `${total === null ? '' : `; ${total} live session(s) ended`}${sessionsRenewed > 0 ? `; ${sessionsRenewed} live session(s) took the new permissions` : ''}`;
}

/**
 * After a change written to the store and told (toLiveSessions, which ends
 * the sessions holding a permission taken away): the live sessions it takes
 * something else from, ended on the running server as the admin API's PATCH
 * ends them. An expiry already past ends all the user's sessions; changed
 * login rules (protocols, TLS, addresses, a key required) end those the rules
 * now refuse. How many were ended; null when there was nothing to end or no
 * server runs.
 */
async function endLiveSessions(reach: Reach, after: UserRecord, patch: Partial<UserSettings>): Promise<number | null> {
  const revoked = revokedBy(patch);
  const user = encodeURIComponent(after.name);
  if (revoked !== null) {
    const reason = `${revoked} by an administrator`;
    const reply = await ifRunning(reach, 'DELETE', `/users/${user}/sessions?reason=${encodeURIComponent(reason)}`);
    return reply === null ? null : (reply.body as { sessionsEnded: number }).sessionsEnded;
  }
  if (!changesLoginRules(patch)) return null;
  const listed = await ifRunning(reach, 'GET', `/sessions?user=${user}`);
  if (listed === null) return null;
  let ended = 0;
  for (const live of refusedNow(after, listed.body as LiveSessionInfo[])) {
    // A session that ended meanwhile is a 404: nothing left to end.
    const reply = await ifRunning(reach, 'DELETE', `/sessions/${encodeURIComponent(live.id)}?reason=${encodeURIComponent('rules changed by an administrator')}`).catch((err: unknown) => {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    });
    if (reply !== null) ended++;
  }
  return ended;
}

async function keyCommand(args: string[], open: () => Promise<AdminServices>, reach: Reach, out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'add': {
      const { positionals } = parse(rest, {}, ['NAME', 'FILE']);
      const [name, file] = positionals as [string, string];
      const key = parseKey(readKeyFile(file));
      await (await open()).admin.addKey(name, key);
      out(`added ${key.algorithm} key ${key.fingerprint} to ${name}\n`);
      return 0;
    }
    case 'list': {
      const { positionals } = parse(rest, {}, ['NAME']);
      const { keys } = await (await open()).admin.show(positionals[0] as string);
      out(table(['FINGERPRINT', 'TYPE', 'COMMENT', 'ADDED', 'REFUSED'], keys.map((k) => [
        k.fingerprint, k.algorithm, k.comment || '-', k.createdAt.toISOString(), k.refused ?? '-',
      ])));
      return 0;
    }
    case 'remove': {
      const { positionals } = parse(rest, {}, ['NAME', 'FINGERPRINT']);
      const [name, fp] = positionals as [string, string];
      // Through the running server when there is one, which ends the user's live sessions at once, as disabling does.
      const reply = await ifRunning(reach, 'DELETE', `/users/${encodeURIComponent(name)}/keys/${encodeURIComponent(fp)}`);
      if (reply) {
        out(`removed key ${fp} from ${name}; ${(reply.body as { sessionsEnded: number }).sessionsEnded} live session(s) ended\n`);
        return 0;
      }
      await (await open()).admin.removeKey(name, fp);
      out(`removed key ${fp} from ${name}\n`);
      return 0;
    }
    default:
      throw new UsageError('usage: sluice user key add NAME FILE | list NAME | remove NAME FINGERPRINT');
  }
}

/** `--rate-up 5M`: bytes per second; 0 for none, `default` for the server's limits.rateUp/rateDown. */
function parseRate(flag: string, text: string): number | null {
  return text === 'default' ? null : parseSize(flag, text);
}

/**
 * An address list's CIDRs, or `clear` alone for no list (`--allow-ip any`:
 * every address may log in; `--deny-ip none`: none is refused). Before, only
 * the API could drop a list (found by an operator's review).
 */
function addressList(option: string, values: readonly string[], clear: string): string[] {
  if (!values.includes(clear)) return parseCidrs(values);
  if (values.length > 1) throw new UsageError(`${option} ${clear} drops the list: give it alone`);
  return [];
}

/** As logins see it: a user past its expiry is refused however enabled (found by an operator's review: `show` said enabled). */
function stateOf(u: UserView): 'enabled' | 'disabled' | 'expired' {
  if (!u.enabled) return 'disabled';
  return u.expiresAt && u.expiresAt.getTime() <= Date.now() ? 'expired' : 'enabled';
}

function describeRate(rate: number | null): string {
  if (rate === null) return 'server default';
  return rate === 0 ? 'unlimited' : `${rate} bytes/s`;
}

function describeUser(u: UserView): string {
  const lines = [
    ['name', u.name],
    ['state', stateOf(u)],
    ['expires', u.expiresAt ? u.expiresAt.toISOString() : 'never'],
    ['home', u.home],
    ['password', u.password],
    ['protocols', u.protocols.join(',')],
    ['require tls', u.requireTls ? 'yes' : 'no'],
    ['require key', u.requireKey ? 'yes' : 'no'],
    ['permissions', u.permissions.join(',') || 'none'],
    ...u.dirPermissions.map((d) => [`  ${d.path}`, d.permissions.join(',') || 'none']),
    ['quota', `${u.quotaBytes || 'unlimited'} bytes, ${u.quotaFiles || 'unlimited'} files`],
    ['used', `${u.usedBytes} bytes, ${u.usedFiles} files`],
    ['rate up', describeRate(u.rateUp)],
    ['rate down', describeRate(u.rateDown)],
    ['scan', u.scan === null ? 'server default' : u.scan ? 'yes' : 'no'],
    ['allow ip', u.allowIps.join(' ') || 'any'],
    ['deny ip', u.denyIps.join(' ') || '-'],
    ['last login', u.lastLoginAt ? u.lastLoginAt.toISOString() : 'never'],
    ...u.keys.map((k) => ['key', `${k.fingerprint} ${k.algorithm} ${k.comment}${k.refused === null ? '' : ` (no login takes it: ${k.refused})`}`]),
  ];
  return lines.map(([k, v]) => `${shown(String(k)).padEnd(13)}${shown(String(v))}`).join('\n') + '\n';
}

/** `rows` escaped (shown) in a table: what these commands list may hold a client's choice. */
export function table(head: string[], rows: string[][]): string {
  return textTable(head, rows.map((r) => r.map(shown)));
}

/** A date already past is taken (it ends the account now), but said: a mistyped year would otherwise lock a customer out unseen. */
function notePastExpiry(name: string, expiresAt: Date | null | undefined, out: (s: string) => void): void {
  if (expiresAt && expiresAt.getTime() <= Date.now()) {
    out(`note: user ${name} expired at ${expiresAt.toISOString()}, already past: it cannot log in until --expires is later or never\n`);
  }
}

/** A --scan this server's config gives no scanner to: said, as the setting is taken all the same. */
function noteIdleScan(config: AdminServices['config'], name: string, scan: boolean | null | undefined, out: (s: string) => void): void {
  const idle = scanSettingIdle(config.uploads, scan ?? null);
  if (idle) out(`note: user ${name} is set to be scanned, but ${idle}\n`);
}
