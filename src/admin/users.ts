import type { FastifyInstance } from 'fastify';
import { USER_NAME } from '../auth/authenticator.js';
import { PROTOCOLS } from '../session/account.js';
import { PERMISSIONS } from '../session/permissions.js';
import type { UserRecord, UserSettings } from '../store/records.js';
import {
  changesLoginRules,
  parseCidrs,
  parseExpiresAt,
  parseKey,
  parsePerms,
  parseProtocols,
  parseVirtualDir,
  refusedNow,
  repeatedKey,
  revokedBy,
  validatePassword,
  validateHome,
  validateUserName,
  type UserAdmin,
} from '../users/admin.js';
import type { AdminContext } from './context.js';
import { BadInput, inField, inFieldAsync } from './errors.js';

/*
 * Users, through UserAdmin: the very code `sluice user` runs, so every change
 * is validated and written as the CLI does it. The schemas take JSON types
 * (arrays, integers, booleans) where the CLI takes text; what the CLI then
 * checks, the same parse functions check here.
 */

const name = { type: 'string', minLength: 1, maxLength: 64 } as const;
// A name in a path no user can have is refused, not looked up (a NUL byte made PostgreSQL's look-up fail).
const storedName = { ...name, pattern: USER_NAME.source } as const;
const nameParams = { type: 'object', additionalProperties: false, required: ['name'], properties: { name: storedName } } as const;
const permissions = { type: 'array', maxItems: PERMISSIONS.length, items: { type: 'string', enum: [...PERMISSIONS] } } as const;
// Printable ASCII, as every fingerprint is (SHA256:...): a NUL byte made PostgreSQL's look-up fail (a 500).
const fingerprint = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[!-~]+$' } as const;
const cidrs = { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 64 } } as const;

/** What both create and update may set. */
const settings = {
  home: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/', description: 'an absolute path on the server' },
  permissions,
  protocols: { type: 'array', minItems: 1, maxItems: PROTOCOLS.length, items: { type: 'string', enum: [...PROTOCOLS] } },
  // Past 2^53 a number is no longer exact (SQLite would keep 1e300 as a float).
  quotaBytes: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'bytes; 0: unlimited' },
  quotaFiles: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: '0: unlimited' },
  rateUp: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, nullable: true, description: 'bytes per second per connection; 0: none; null: the server\'s limits.rateUp' },
  rateDown: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, nullable: true, description: 'bytes per second per connection; 0: none; null: the server\'s limits.rateDown' },
  scan: { type: 'boolean', nullable: true, description: 'uploads scanned for malware; null: as the server\'s uploads.scan says' },
  requireTls: { type: 'boolean' },
  requireKey: { type: 'boolean' },
  allowIps: cidrs,
  denyIps: cidrs,
  expiresAt: { type: 'string', format: 'date-time', nullable: true, description: 'null: never' },
} as const;
const password = { type: 'string', minLength: 1, maxLength: 1024 } as const;
const publicKey = { type: 'string', minLength: 1, maxLength: 16384, description: 'one line of an OpenSSH .pub file' } as const;

const keyView = {
  type: 'object',
  properties: {
    id: { type: 'integer' }, algorithm: { type: 'string' }, fingerprint: { type: 'string' }, comment: { type: 'string' }, createdAt: { type: 'string', format: 'date-time' },
    refused: { type: 'string', nullable: true, description: 'why no login takes this key (stored before such keys were refused); null: logins take it' },
  },
} as const;
const date = { type: 'string', format: 'date-time' } as const;
const userView = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    name: { type: 'string' },
    home: { type: 'string' },
    enabled: { type: 'boolean' },
    expiresAt: { ...date, nullable: true },
    protocols: { type: 'array', items: { type: 'string' } },
    requireTls: { type: 'boolean' },
    requireKey: { type: 'boolean' },
    permissions: { type: 'array', items: { type: 'string' } },
    dirPermissions: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, permissions: { type: 'array', items: { type: 'string' } } } } },
    quotaBytes: { type: 'integer' },
    quotaFiles: { type: 'integer' },
    usedBytes: { type: 'integer' },
    usedFiles: { type: 'integer' },
    rateUp: { type: 'integer', nullable: true },
    rateDown: { type: 'integer', nullable: true },
    scan: { type: 'boolean', nullable: true },
    allowIps: { type: 'array', items: { type: 'string' } },
    denyIps: { type: 'array', items: { type: 'string' } },
    password: { type: 'string', enum: ['set', 'none'] },
    keys: { type: 'array', items: keyView },
    createdAt: date,
    updatedAt: date,
    lastLoginAt: { ...date, nullable: true },
  },
} as const;
const ended = { type: 'object', properties: { sessionsEnded: { type: 'integer' } } } as const;

type Settings = {
  home?: string;
  permissions?: string[];
  protocols?: string[];
  quotaBytes?: number;
  quotaFiles?: number;
  rateUp?: number | null;
  rateDown?: number | null;
  scan?: boolean | null;
  requireTls?: boolean;
  requireKey?: boolean;
  allowIps?: string[];
  denyIps?: string[];
  expiresAt?: string | null;
};

/** The body's settings, each checked by the CLI's own parser and named in any 400; `storedHome`: see validateHome. */
function settingsFrom(b: Settings, storedHome?: string): Partial<UserSettings> {
  const out: Partial<UserSettings> = {};
  if (b.home !== undefined) out.home = inField('body.home', () => validateHome(b.home as string, storedHome));
  if (b.permissions !== undefined) out.permissions = inField('body.permissions', () => parsePerms(b.permissions?.join(',') || 'none'));
  if (b.protocols !== undefined) out.protocols = inField('body.protocols', () => parseProtocols((b.protocols ?? []).join(',')));
  if (b.quotaBytes !== undefined) out.quotaBytes = b.quotaBytes;
  if (b.quotaFiles !== undefined) out.quotaFiles = b.quotaFiles;
  if (b.rateUp !== undefined) out.rateUp = b.rateUp;
  if (b.rateDown !== undefined) out.rateDown = b.rateDown;
  if (b.scan !== undefined) out.scan = b.scan;
  if (b.requireTls !== undefined) out.requireTls = b.requireTls;
  if (b.requireKey !== undefined) out.requireKey = b.requireKey;
  if (b.allowIps !== undefined) out.allowIps = inField('body.allowIps', () => parseCidrs(b.allowIps ?? []));
  if (b.denyIps !== undefined) out.denyIps = inField('body.denyIps', () => parseCidrs(b.denyIps ?? []));
  // The format check lets through what no Date holds (a leap second, 23:59:60): refused here, by name.
  if (b.expiresAt !== undefined) out.expiresAt = b.expiresAt === null ? null : inField('body.expiresAt', () => parseExpiresAt(b.expiresAt as string));
  return out;
}

export function userRoutes(api: FastifyInstance, { base, sessions }: AdminContext): void {
  const admin: UserAdmin = base.admin;
  /**
   * A change that must reach live sessions at once: the user's sessions are
   * ended. By the name as stored: the API finds a user whatever the case of
   * the name it is given, as logins do, and sessions carry the stored name.
   */
  const endSessions = (user: UserRecord, reason: string) => sessions.endUser(user.name, reason);
  /**
   * Every change of a user, told to every process once written and before
   * the sessions it ends are ended, so that a login under way that read the
   * user before the write reads it again as its session opens, whenever it
   * registers. The user's sessions take changed permissions at once (kept, a
   * session's old overrides let it move a file into a directory the change
   * widened, which no later login may); those holding a permission taken
   * away end, whatever their login was given. How many ended.
   */
  const told = async (user: UserRecord): Promise<number> => (await sessions.userChanged(user.id)).ended;
  /**
   * A change of the rules a login is checked against (protocols, TLS, addresses, a key required)
   * ends each live session whose login they would refuse now, as the login
   * itself would be refused: the others go on.
   */
  const endRefused = async (user: UserRecord, patch: Partial<UserSettings>): Promise<number> => {
    if (!changesLoginRules(patch)) return 0;
    const refused = refusedNow(user, await sessions.list());
    const ended = await Promise.all(refused.map((s) => sessions.end(s.id, 'rules changed by an administrator')));
    return ended.filter(Boolean).length;
  };

  api.get('/users', { schema: { summary: 'List users', response: { 200: { type: 'array', items: userView } } } }, async () => admin.list());

  api.get<{ Params: { name: string } }>(
    '/users/:name',
    { schema: { summary: 'Show a user', params: nameParams, response: { 200: userView } } },
    async (req) => admin.show(req.params.name),
  );

  api.post<{ Body: Settings & { name: string; password?: string; keys?: string[] } }>(
    '/users',
    {
      schema: {
        summary: 'Create a user (a password or at least one key)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: { name, password, keys: { type: 'array', maxItems: 64, items: publicKey }, ...settings },
        },
        response: { 201: userView },
      },
    },
    async (req, reply) => {
      const b = req.body;
      inField('body.name', () => validateUserName(b.name));
      const s = settingsFrom(b);
      const keys = (b.keys ?? []).map((k, i) => inField(`body.keys.${i}`, () => parseKey(k)));
      const twice = repeatedKey(keys);
      if (twice) throw new BadInput(`body.keys.${twice[1]}`, `the same key as body.keys.${twice[0]} (${keys[twice[1]]?.fingerprint})`);
      const user = await admin.add({
        name: b.name,
        password: b.password === undefined ? null : inField('body.password', () => validatePassword(b.password as string)),
        keys,
        home: s.home,
        permissions: s.permissions,
        protocols: s.protocols,
        quotaBytes: s.quotaBytes,
        quotaFiles: s.quotaFiles,
        rateUp: s.rateUp,
        rateDown: s.rateDown,
        scan: s.scan,
        requireTls: s.requireTls,
        requireKey: s.requireKey,
        allowIps: s.allowIps,
        denyIps: s.denyIps,
        expiresAt: s.expiresAt,
      });
      return reply.code(201).send(await admin.show(user.name));
    },
  );

  api.patch<{ Params: { name: string }; Body: Settings & { enabled?: boolean; password?: string } }>(
    '/users/:name',
    {
      schema: {
        summary: 'Change a user; enabled: false, an expiry already past, or permissions taken away also end their live sessions, and rules (protocols, requireTls, requireKey, allowIps, denyIps) that now refuse a live session end it; sessions left take changed permissions at once',
        params: nameParams,
        body: { type: 'object', additionalProperties: false, minProperties: 1, properties: { enabled: { type: 'boolean' }, password, ...settings } },
        response: { 200: { ...userView, properties: { ...userView.properties, ...ended.properties } } },
      },
    },
    async (req) => {
      const { password: newPassword, enabled, ...rest } = req.body;
      const user = await admin.require(req.params.name);
      const patch = settingsFrom(rest, user.home);
      if (enabled !== undefined) patch.enabled = enabled;
      const checked = newPassword === undefined ? null : inField('body.password', () => validatePassword(newPassword));
      const updated = await admin.update(req.params.name, patch, checked ?? undefined);
      const revoked = revokedBy(patch);
      // Told first: the sessions holding a permission taken away end there. Then a revocation ends every
      // session left, else the rules end those they refuse now.
      const endedByTelling = await told(updated);
      const sessionsEnded = endedByTelling + (revoked !== null
        ? await endSessions(user, `${revoked} by an administrator`)
        : await endRefused(updated, patch));
      return { ...(await admin.show(req.params.name)), sessionsEnded };
    },
  );

  api.delete<{ Params: { name: string } }>(
    '/users/:name',
    { schema: { summary: 'Remove a user and end their live sessions (the home is kept)', params: nameParams, response: { 200: ended } } },
    async (req) => {
      const user = await admin.require(req.params.name);
      await admin.remove(user.name);
      const endedByTelling = await told(user);
      return { sessionsEnded: endedByTelling + (await endSessions(user, 'user removed by an administrator')) };
    },
  );

  api.get<{ Params: { name: string } }>(
    '/users/:name/keys',
    { schema: { summary: "A user's public keys", params: nameParams, response: { 200: { type: 'array', items: keyView } } } },
    async (req) => (await admin.show(req.params.name)).keys,
  );

  api.post<{ Params: { name: string }; Body: { key: string } }>(
    '/users/:name/keys',
    {
      schema: {
        summary: 'Add a public key',
        params: nameParams,
        body: { type: 'object', additionalProperties: false, required: ['key'], properties: { key: publicKey } },
        response: { 201: keyView },
      },
    },
    async (req, reply) => {
      const key = inField('body.key', () => parseKey(req.body.key));
      await admin.addKey(req.params.name, key);
      return reply.code(201).send((await admin.show(req.params.name)).keys.find((k) => k.fingerprint === key.fingerprint));
    },
  );

  api.delete<{ Params: { name: string; fingerprint: string } }>(
    '/users/:name/keys/:fingerprint',
    {
      schema: {
        summary: "Remove a key (its fingerprint URL-encoded, e.g. SHA256%3A...) and end the user's live sessions",
        params: { type: 'object', additionalProperties: false, required: ['name', 'fingerprint'], properties: { name: storedName, fingerprint } },
        response: { 200: ended },
      },
    },
    async (req) => {
      const user = await admin.require(req.params.name);
      await admin.removeKey(user.name, req.params.fingerprint);
      const endedByTelling = await told(user);
      return { sessionsEnded: endedByTelling + (await endSessions(user, 'key removed by an administrator')) };
    },
  );

  api.put<{ Params: { name: string }; Body: { path: string; permissions: string[] | null } }>(
    '/users/:name/permissions',
    {
      schema: {
        summary: "Permissions of one directory and below; null drops the override (it inherits again). Taking a permission away ends the user's live sessions that hold it; the others take the new permissions at once",
        params: nameParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['path', 'permissions'],
          properties: { path: { type: 'string', minLength: 1, maxLength: 4096 }, permissions: { ...permissions, nullable: true } },
        },
        response: { 200: { type: 'object', properties: { path: { type: 'string' }, permissions: { type: 'array', nullable: true, items: { type: 'string' } }, ...ended.properties } } },
      },
    },
    async (req) => {
      const { permissions: list } = req.body;
      const perms = list === null ? null : inField('body.permissions', () => parsePerms(list.join(',') || 'none'));
      // The path's own mistakes first, as setDirPermissions finds them, whether or not the user exists.
      inField('body.path', () => parseVirtualDir(req.body.path));
      const user = await admin.require(req.params.name);
      const path = await inFieldAsync('body.path', () => admin.setDirPermissions(req.params.name, req.body.path, perms));
      return { path, permissions: perms, sessionsEnded: await told(user) };
    },
  );
}
