import type { AuditEvent, AuditSink } from '../audit/events.js';
import type { MetricsSink } from '../metrics/events.js';
import { ANONYMOUS, type Account, type LoginMethod, type Protocol } from '../session/account.js';
import type { StoredAccess } from '../session/live.js';
import { isPermission, rulesOfList, sameRules, type PermissionRules } from '../session/permissions.js';
import type { UserRecord } from '../store/records.js';
import type { UserRepository } from '../store/store.js';
import { addressAllowed } from './ip-rules.js';
import { passwordMark, type PasswordHasher } from './passwords.js';
import { sameKey, weakKey } from './public-keys.js';

export type AuthFailure =
  | 'unknown-user'
  | 'bad-password'
  | 'bad-key'
  | 'bad-signature'
  | 'weak-algorithm'
  /** A stored key too weak to log in with (an RSA key under MIN_RSA_BITS, stored before they were refused). */
  | 'weak-key'
  | 'disabled'
  | 'expired'
  | 'protocol-not-allowed'
  | 'address-not-allowed'
  | 'tls-required'
  | 'key-required'
  | 'bad-name'
  | 'session-limit'
  /** Good credentials, but the client had gone by the time its session would have opened. */
  | 'connection-closed'
  /** The client replaced the request before its turn (SSH keyboard-interactive): not verified, not recorded. */
  | 'withdrawn'
  | 'too-many-tries';

/**
 * What a user's name is made of (`sluice user add`, the admin API): 1-64
 * ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit.
 * A login under any other name is refused at the edge, without a look-up: no
 * such user can exist, and a store may not even take the name as a query (a
 * NUL byte made PostgreSQL's look-up throw, so the attempt went unaudited and
 * unscored by the defender: found by a review).
 */
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The longest user name, in bytes: longer ones are never written whole to the audit trail. */
export const MAX_USER_NAME_BYTES = 64;

/** What a client may type as USER for an anonymous login (vsftpd's and ProFTPD's names). */
export const ANONYMOUS_LOGINS: readonly string[] = [ANONYMOUS, 'ftp'];

/** How many sessions of one user may be open at once; unset: the server's per-user limit. */
export interface SessionLimits {
  readonly max?: number;
  /** From one client source (an address, an IPv6 network) as well. */
  readonly perSource?: number;
}

/**
 * Called once the credentials are good, with the stored name and how the
 * login proved itself: a session slot for `user` within `limits`. Refused:
 * none free ('limit'), the client gone meanwhile ('closed'), or the
 * connection spent while the credentials were verified ('exhausted': its
 * address banned, or its tries used up).
 */
export type Claim = (user: string, method: LoginMethod, limits?: SessionLimits) => Promise<'ok' | 'limit' | 'closed' | 'exhausted'>;

/** Front-ends answer every failure alike ("login incorrect"); the reason goes to the audit log only. */
export class AuthError extends Error {
  constructor(readonly reason: AuthFailure) {
    super('Login incorrect');
    this.name = 'AuthError';
  }
}

export interface AuthRequest {
  username: string;
  protocol: Protocol;
  remoteAddress: string;
  remotePort: number;
  /** Connection id for the audit trail before a session exists. */
  connection: string;
}

/** The permissions a session of `u` holds, as stored now (names no release knows are dropped). */
export function permissionRulesOf(u: UserRecord): PermissionRules {
  const known = (ps: readonly string[]) => ps.filter(isPermission);
  return rulesOfList({ root: known(u.permissions), dirs: u.dirPermissions.map((d) => [d.path, known(d.permissions)] as const) });
}

/**
 * `readAt`: when `u` was read from the store (performance.now()), before any
 * wait on the way to the login; `key`: the fingerprint a public-key login proved.
 */
export function toAccount(u: UserRecord, method: LoginMethod, readAt: number, key: string | null = null): Account {
  return {
    id: u.id,
    name: u.name,
    home: u.home,
    permissions: permissionRulesOf(u),
    quotaBytes: u.quotaBytes,
    quotaFiles: u.quotaFiles,
    rateUp: u.rateUp,
    rateDown: u.rateDown,
    scan: u.scan,
    // A user not allowed plain FTP may not move files in clear either: the login over TLS alone
    // was guarded, and PROT C after it carried an ftps-only user's files in clear (found by a review).
    requireTls: u.requireTls || !u.protocols.includes('ftp'),
    revision: u.updatedAt.getTime(),
    readAt,
    method,
    key,
    passwordMark: method === 'password' && u.passwordHash !== null ? passwordMark(u.passwordHash) : null,
  };
}

/** The one authenticate() of all front-ends: password or public key, then the account's rules. */
export class Authenticator {
  constructor(
    private readonly users: UserRepository,
    private readonly hasher: PasswordHasher,
    private readonly audit: AuditSink | null,
    private readonly metrics: MetricsSink,
    /** Anonymous FTP, when ftp.anonymous.enabled; see users/anonymous.ts. */
    private readonly anonymous: { readonly maxSessions: number; readonly maxSessionsPerIp: number } | null = null,
  ) {}

  async password(req: AuthRequest, password: string, claim?: Claim): Promise<Account> {
    if (impossible(req.username)) return this.fail(req, 'password', 'bad-name');
    if (this.anonymous && ANONYMOUS_LOGINS.includes(req.username.toLowerCase()) && (req.protocol === 'ftp' || req.protocol === 'ftps')) {
      return this.anonymousLogin(req, password, { max: this.anonymous.maxSessions, perSource: this.anonymous.maxSessionsPerIp }, claim);
    }
    const asked = performance.now();
    const found = await this.users.credentials(req.username);
    const user = found?.user ?? null;
    const readAt = found?.readAt ?? asked;
    const hash = user?.passwordHash ?? null;
    const kept = hash !== null && this.hasher.kept(hash, password);
    const ok = kept || (await this.hasher.verify(hash, password));
    if (!user) return this.fail(req, 'password', 'unknown-user');
    if (!ok || hash === null) return this.fail(req, 'password', 'bad-password', user);
    try {
      this.checkRules(req, user, 'password');
    } catch (err) {
      // Refused by the account's rules with the right password: no longer kept (the rules changed since),
      // and as slow as a refusal that verified in full.
      if (kept) {
        this.hasher.forget(hash);
        await this.hasher.verify(hash, password);
      }
      throw err;
    }
    // Past the rules only the session limit, or a client gone meanwhile, refuses; both say the password was
    // right whatever the time (SECURITY.md), so the entry stays for the login that comes next.
    const account = await this.succeed(req, user, 'password', claim, readAt);
    const current = this.hasher.needsRehash(hash) ? await this.rehashed(user, hash, password) : hash;
    if (!kept || current !== hash) this.hasher.remember(current, password);
    // The login's own rehash is no change of its password: its sessions open under the hash stored now.
    return current === hash ? account : { ...account, passwordMark: passwordMark(current) };
  }

  /**
   * The hash of `password` stored now, once the login stored it at today's
   * parameters in place of `from`; `from` when the store refused (the next
   * login tries again), or when the password stored now is another.
   */
  private async rehashed(user: UserRecord, from: string, password: string): Promise<string> {
    try {
      const hash = await this.hasher.hash(password);
      if (await this.users.rehashPassword(user.id, from, hash)) return hash;
      // Replaced since the login read it: by another login's rehash, whose hash this password verifies against as
      // well (the login proved that one, and its SSH channels open), or by an administrator's change, which it
      // does not (its sessions do not open: refreshed).
      const now = await this.users.get(user.name);
      const stored = now?.id === user.id ? now.passwordHash : null;
      return stored !== null && (this.hasher.kept(stored, password) || (await this.hasher.verify(stored, password))) ? stored : from;
    } catch {
      return from;
    }
  }

  /**
   * Is `blob` one of the user's keys? With `verified` false this only answers
   * the SSH client's question whether a key would do: no login, no audit event.
   */
  async publicKey(req: AuthRequest, blob: Buffer, verified: boolean, claim?: Claim): Promise<Account> {
    if (impossible(req.username)) {
      if (!verified) throw new AuthError('bad-name');
      return this.fail(req, 'publickey', 'bad-name');
    }
    const asked = performance.now();
    const found = await this.users.credentials(req.username);
    const user = found?.user ?? null;
    const readAt = found?.readAt ?? asked;
    const known = found?.keys.find((k) => sameKey(k.blob, blob)) ?? null;
    // One stored before such keys were refused (or by hand) proves nothing: anyone may have factored it.
    const weak = known !== null && weakKey(known.blob) !== null;
    if (!verified) {
      if (!known) throw new AuthError(user ? 'bad-key' : 'unknown-user');
      if (weak) throw new AuthError('weak-key');
      return toAccount(user as UserRecord, 'publickey', readAt, known.fingerprint);
    }
    if (!user) return this.fail(req, 'publickey', 'unknown-user');
    if (!known) return this.fail(req, 'publickey', 'bad-key', user);
    if (weak) return this.fail(req, 'publickey', 'weak-key', user);
    this.checkRules(req, user, 'publickey');
    return await this.succeed(req, user, 'publickey', claim, readAt, known.fingerprint);
  }

  /** A failure only the front-end can see (a public-key signature that does not verify). */
  async refuse(req: AuthRequest, method: 'password' | 'publickey', reason: AuthFailure): Promise<never> {
    const user = impossible(req.username) ? undefined : (await this.users.credentials(req.username))?.user;
    return this.fail(req, method, reason, user);
  }

  /**
   * Any password: by convention the client's e-mail address, recorded (bounded)
   * and never checked. The stored account's rules (enabled, protocols, TLS,
   * addresses) and its own session limit still apply.
   */
  private async anonymousLogin(req: AuthRequest, password: string, limits: SessionLimits, claim: Claim | undefined): Promise<Account> {
    const asked = performance.now();
    const found = await this.users.credentials(ANONYMOUS);
    const user = found?.user;
    const readAt = found?.readAt ?? asked;
    if (!user) return this.fail(req, 'password', 'unknown-user');
    this.checkRules(req, user, 'password');
    await this.claimSlot(req, 'anonymous', user, claim, limits);
    return await this.loggedIn(req, user, { event: 'login', method: 'anonymous', email: password.slice(0, 100) }, readAt);
  }

  /**
   * The account logged in earlier as the store has it now, for a new session
   * of that login: null when it may no longer open one (removed, disabled,
   * expired, or its name now another user's id). An SSH connection authenticates
   * once and opens sessions later: each gets the user's rights and quota as
   * they are when it opens, not as they were at the login.
   */
  async refreshed(account: Account, where: Pick<AuthRequest, 'protocol' | 'remoteAddress'>): Promise<Account | null> {
    // The store itself, not a copy of it (credentials()): this is the check that catches a
    // change whose notice has not arrived, and it is not on the way to a login.
    const readAt = performance.now();
    const user = await this.users.get(account.name);
    if (user === null || user.id !== account.id) return null;
    // A key removed since: a connection that proved it opens no more sessions, as a login with it would be refused.
    if (account.key !== null && !(await this.users.keys(user.id)).some((k) => k.fingerprint === account.key)) return null;
    // A password changed since, likewise: a password leaked and changed let a login that was verifying the old
    // one as the change was written open its session, and an SSH connection that logged in with it before open
    // new SFTP and SCP sessions after it (found by a review). Only ending the user's sessions refused them.
    if (account.passwordMark !== null && (user.passwordHash === null || passwordMark(user.passwordHash) !== account.passwordMark)) return null;
    // The rules a login is refused by, as they are now: an address denied or a protocol taken away since the
    // login held only for new logins, and a standing SSH connection (OpenSSH's ControlMaster) went on opening
    // SFTP and SCP sessions (found by a review).
    if (refusal(user, where.protocol, where.remoteAddress, account.method) !== null) return null;
    const now = toAccount(user, account.method, readAt, account.key);
    // Most often the user is as the login read it: the connection's sessions then hold the login's account,
    // not a copy each (found by heap snapshots of idle SFTP sessions). Its earlier readAt only makes
    // LiveRegistry.catchUp read the user once more, for a change told between the two reads.
    return sameBut(account, now, 'readAt') ? account : now;
  }

  /** The home, permissions and scanning of the account's user as stored now; null when it was removed (or its name is another user's now). */
  async storedAccess(account: Pick<Account, 'id' | 'name'>): Promise<StoredAccess | null> {
    const user = await this.users.get(account.name);
    return user === null || user.id !== account.id ? null : { home: user.home, permissions: permissionRulesOf(user), scan: user.scan };
  }

  private checkRules(req: AuthRequest, user: UserRecord, method: 'password' | 'publickey'): void {
    const reason = refusal(user, req.protocol, req.remoteAddress, method);
    if (reason !== null) this.fail(req, method, reason, user);
  }

  private async succeed(req: AuthRequest, user: UserRecord, method: 'password' | 'publickey', claim: Claim | undefined, readAt: number, key: string | null = null): Promise<Account> {
    await this.claimSlot(req, method, user, claim);
    return await this.loggedIn(req, user, { event: 'login', method }, readAt, key);
  }

  /** Every good login ends here: stored, audited, counted. */
  private async loggedIn(req: AuthRequest, user: UserRecord, event: Extract<AuditEvent, { event: 'login' }>, readAt: number, key: string | null = null): Promise<Account> {
    // Bookkeeping only, after the session slot was taken: not waited for (on a shared store it
    // is a round trip), and a store that fails here must not fail a login already decided.
    void this.users.recordLogin(user.id).catch(() => undefined);
    this.audit?.record(this.actor(req, user), event);
    this.metrics.count({ m: 'login', protocol: req.protocol, result: 'ok', reason: '' });
    return toAccount(user, event.method, readAt, key);
  }

  private async claimSlot(req: AuthRequest, login: LoginMethod, user: UserRecord, claim: Claim | undefined, limits?: SessionLimits): Promise<void> {
    const got = claim ? await claim(user.name, login, limits) : 'ok';
    // An anonymous login's failures are recorded as password ones, as the rest of anonymousLogin's are.
    const method = login === 'anonymous' ? 'password' : login;
    if (got === 'limit') this.fail(req, method, 'session-limit', user);
    if (got === 'closed') this.fail(req, method, 'connection-closed', user);
    if (got === 'exhausted') this.fail(req, method, 'too-many-tries', user);
  }

  private fail(req: AuthRequest, method: 'password' | 'publickey', reason: AuthFailure, user?: UserRecord): never {
    this.audit?.record(this.actor(req, user), { event: 'login-failed', method, reason });
    this.metrics.count({ m: 'login', protocol: req.protocol, result: 'failed', reason });
    throw new AuthError(reason);
  }

  /**
   * A login audited whose session then did not open (its home refused, the
   * server draining): its end, so that every login record has a logout.
   */
  notOpened(req: AuthRequest, user: string, reason: string): void {
    this.audit?.record({ ...this.actor(req, undefined), user }, { event: 'logout', duration_ms: 0, reason: `session not opened: ${reason}` });
  }

  /** The user as stored (a login as ALICE is alice's), else what was sent, bounded. */
  private actor(req: AuthRequest, user: UserRecord | undefined) {
    return {
      session: req.connection,
      user: user?.name ?? boundedName(req.username),
      protocol: req.protocol,
      ip: req.remoteAddress,
      port: req.remotePort,
    };
  }
}

/** Do `a` and `b` say the same in every field but `except`? */
function sameBut(a: Account, b: Account, except: keyof Account): boolean {
  return (Object.keys(a) as (keyof Account)[]).every((k) => k === except || (k === 'permissions' ? sameRules(a.permissions, b.permissions) : a[k] === b[k]));
}

/**
 * Why the account's rules refuse a login by `method` over `protocol` from
 * `address` now; null: they allow it. The admin API and the CLI ask it of
 * live sessions when rules change.
 */
export function refusal(user: UserRecord, protocol: Protocol, address: string, method: LoginMethod): AuthFailure | null {
  // scp rides an SSH login, which is allowed as sftp (account.ts, PROTOCOLS).
  if (protocol === 'scp') protocol = 'sftp';
  if (!user.enabled) return 'disabled';
  if (user.expiresAt && user.expiresAt.getTime() <= Date.now()) return 'expired';
  // Being allowed plain FTP implies being allowed the same over TLS: more security is never refused.
  const allowed = user.protocols.includes(protocol) || (protocol === 'ftps' && user.protocols.includes('ftp'));
  if (!allowed) return 'protocol-not-allowed';
  if (user.requireTls && protocol === 'ftp') return 'tls-required';
  if (!addressAllowed(address, user.allowIps, user.denyIps)) return 'address-not-allowed';
  // Anonymous FTP's user is never stored with requireKey (users/anonymous.ts); any other password login is refused.
  if (user.requireKey && method !== 'publickey') return 'key-required';
  return null;
}

function overlong(name: string): boolean {
  return Buffer.byteLength(name) > MAX_USER_NAME_BYTES;
}

/** No user can have this name (USER_NAME). */
function impossible(name: string): boolean {
  return !USER_NAME.test(name);
}

/** An over-long name is recorded by its start and length, so the audit trail stays small. */
function boundedName(name: string): string {
  return overlong(name) ? `${name.slice(0, 32)}...(${Buffer.byteLength(name)} bytes)` : name;
}
