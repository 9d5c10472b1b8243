import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { AuthError, type Authenticator, type AuthRequest, type Claim, type SessionLimits } from '../auth/authenticator.js';
import type { Config } from '../config/schema.js';
import type { Coordinator, Offence, Release } from '../coordinator/coordinator.js';
import type { Account, Protocol } from '../session/account.js';
import { SluiceError } from '../session/errors.js';
import { answerMoment } from './answer-moment.js';
import type { BanCheck } from './ban-check.js';
import { GOODBYE_MS } from '../wire/goodbye.js';
import { HeldTime } from './held-time.js';
import { ProxyHeaders, type Origin, type ProxyMode } from './proxy-header.js';

/** At most one "connection limit reached" line this often. */
const REFUSAL_LOG_MS = 10_000;
/**
 * Keys an SSH client may ask about (before signing) on one connection that
 * the user does not have. An agent offers each key it holds, so this is
 * more than auth.maxTries, as OpenSSH's MaxAuthTries (6) counts them too.
 */
const MAX_KEY_OFFERS = 10;
/**
 * A key asked about and refused is answered at a whole multiple of this
 * after the question, as a failed login is at auth.failureDelay: what a
 * store does for a user that exists (its record and keys read) took 60-140
 * µs more than for a name that does not, and sampled enough that told which
 * names exist (found by a review). Short: an agent offers each key it holds.
 */
const KEY_REFUSAL_MS = 5;
/**
 * Of the time connections from one source held their places and left without
 * a login attempt, each such share of limits.loginTimeout, summed, scores one
 * login timeout (see HeldTime): a client logs in within a second or two.
 */
const HELD_SHARE = 1 / 3;

export interface GateSettings {
  readonly limits: Config['limits'];
  readonly auth: Config['auth'];
  readonly defender: Pick<Config['defender'], 'window'>;
  readonly trustedProxies: Config['trustedProxies'];
  readonly ftp: { readonly proxyProtocol: ProxyMode };
  readonly sftp: { readonly proxyProtocol: ProxyMode };
}

/** A login attempt as the front-end knows it; the address is the Guest's. */
export type LoginRequest = Omit<AuthRequest, 'remoteAddress'>;

/**
 * Admission and login for every front-end, in one place: each accepted
 * socket is checked against the bans and counted (per address and in total)
 * before anything is read from it, refused at once when banned or over a
 * limit, and given a deadline to log in; every login goes through the same
 * policy (tries, delay, per-user sessions) and every failure is scored by
 * the defender.
 */
export class Gate {
  /** Refusals at the limits since the last warning: logged in sums, so a flood cannot fill the log. */
  private refused = 0;
  private warnedAt = 0;
  private readonly proxies: ProxyHeaders;
  /** Time connections held their places and left without a login attempt (see Guest.dispose). */
  readonly heldWithoutLogin: HeldTime;

  constructor(
    readonly coordinator: Coordinator,
    readonly bans: BanCheck,
    readonly authenticator: Authenticator,
    readonly settings: GateSettings,
    readonly log: Logger,
  ) {
    this.proxies = new ProxyHeaders(settings.trustedProxies, log);
    this.heldWithoutLogin = new HeldTime(settings.limits.loginTimeout * 1000 * HELD_SHARE, settings.defender.window * 1000);
  }

  /**
   * The client address of a fresh socket (its PROXY header's, from a trusted
   * balancer), or null when it has been closed. Everything about a client
   * keys on this address, never on the socket's own peer.
   */
  origin(socket: Socket, protocol: Protocol): Promise<Origin> {
    return this.originAs(socket, this.proxyMode(protocol));
  }

  proxyMode(protocol: Protocol): ProxyMode {
    return protocol === 'sftp' ? this.settings.sftp.proxyProtocol : this.settings.ftp.proxyProtocol;
  }

  /** The same, its header expected as `mode` says (a data connection's: see Guest.dataOrigin). */
  originAs(socket: Socket, mode: ProxyMode): Promise<Origin> {
    return this.proxies.origin(socket, mode);
  }

  /** A connection from a balancer's host: its client, there or forwarded (see ProxyHeaders.hostOrForwarded). */
  hostOrForwarded(socket: Socket): Promise<Origin> {
    return this.proxies.hostOrForwarded(socket);
  }

  /** Is the socket's own peer a trusted balancer? */
  trusts(socket: Socket): boolean {
    return this.proxies.trusts(socket);
  }

  /**
   * A turn to judge a login attempt from `source`: at most defender.threshold
   * at once, the rest waiting, so that no more guesses are judged than the
   * defender lets through before its ban (each waiting one is checked
   * against the ban when its turn comes). Before (found by reviews), guesses
   * sent at once on maxSessionsPerIp connections were all judged, and a right
   * one whose password the cache held skipped the hash queue and logged in
   * wherever it was sent among them. The turns are the coordinator's, so
   * that they hold for the whole server: each worker kept its own, and with
   * two a right guess sent behind seven wrong ones was judged before their
   * ban and logged in (issue #14). Returns the turn's release; rejects when
   * `gone` aborts first (the connection closed), taking no turn.
   */
  turnToJudge(source: string, gone: AbortSignal): Promise<() => void> {
    return this.coordinator.judgeTurns.take(source, gone);
  }

  /**
   * Call first thing on a fresh socket. Null: refused and being closed
   * (after `busyReply`, when given, so FTP clients learn why). Otherwise the
   * connection's Guest, whose slot is freed when the socket closes.
   */
  async admit(socket: Socket, protocol: Protocol, busyReply?: string): Promise<Guest | null> {
    const origin = await this.origin(socket, protocol);
    if (origin === null) return null;
    const ip = origin.address;
    if (this.bans.banned(ip)) {
      // Not logged one by one: a banned address may knock thousands of times (the ban itself was audited).
      socket.destroy();
      return null;
    }
    const source = this.bans.source(ip);
    const counted = await countConnection(this.coordinator, source, socket, this.log);
    // A ban only the defender holds (the store could not take it): closed as a stored one is above.
    if (counted === 'banned') socket.destroy();
    if (counted === 'refused') {
      this.noteRefusal(ip);
      refuse(socket, busyReply);
    }
    if (counted !== 'counted') return null;
    const guest = new Guest(this, socket, ip, origin.port, source, protocol, origin.proxy);
    socket.once('close', () => guest.dispose());
    return guest;
  }

  private noteRefusal(ip: string): void {
    this.refused++;
    const now = Date.now();
    if (now - this.warnedAt < REFUSAL_LOG_MS) return;
    this.log.warn({ ip, refused: this.refused }, 'connection limit reached');
    this.refused = 0;
    this.warnedAt = now;
  }
}

/**
 * Count an accepted socket against connection limits (in total and per
 * `source`) until it closes: every port does, from its accept, so that no
 * port's connections can take the descriptors every other port needs (the
 * admin API's were once uncounted: 20,000 idle ones ran a server out of
 * them; it has a budget of its own). 'refused': over a limit, or the count
 * failed; the caller closes the socket. 'gone': it closed meanwhile.
 */
export async function countConnection(
  coordinator: Pick<Coordinator, 'admit'>,
  source: string,
  socket: Socket,
  log: Logger,
): Promise<'counted' | 'refused' | 'banned' | 'gone'> {
  const release = await coordinator.admit(source).catch((err: unknown) => {
    log.error({ err, ip: source }, 'admission failed: connection refused');
    return null;
  });
  if (release === 'banned') return release;
  if (!release) return 'refused';
  if (socket.destroyed) {
    // Gone while the slot was being counted: its 'close' has passed, nothing else would free it.
    release();
    return 'gone';
  }
  socket.once('close', release);
  return 'counted';
}

/**
 * A handshake the client turned down rather than broke: a TLS alert it sent
 * after checking our certificate (curl or a monitor that does not trust it),
 * or an SSH client with no algorithm in common (ssh-keyscan asking for every
 * key type, an old client). Both are ordinary, and cost the server no more
 * than a completed handshake followed by a close, which scores nothing either.
 */
function declined(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && /^ERR_SSL_(TLSV1|SSLV3)_ALERT_/.test(e.code)) return true;
  return typeof e?.message === 'string' && e.message.startsWith('Handshake failed: no matching ');
}

/** Close now; a reply first if there is one, and never wait for a peer that does not read. */
function refuse(socket: Socket, reply: string | undefined): void {
  if (reply === undefined) {
    socket.destroy();
    return;
  }
  socket.end(reply, () => socket.destroy());
  setTimeout(() => socket.destroy(), GOODBYE_MS).unref();
}

/**
 * One accepted connection until it closes: its pre-login deadline, its failed
 * logins, and the per-user slot of the session it logged in to.
 */
export class Guest {
  private deadline: NodeJS.Timeout | null = null;
  private onExpired: () => void = () => undefined;
  private userSlot: Release | null = null;
  private inSession = false;
  private failures = 0;
  /** Keys asked about (see offerKey). */
  private keysAsked = 0;
  /** Of those, the ones the user did not have. */
  private keyOffers = 0;
  /** A login was attempted and judged (see attemptNow), or the deadline passed (scored there): nothing more to score at the close. */
  private attempted = false;
  /** When the login deadline last started (performance.now()). */
  private armedAt = 0;
  private closed = false;
  /** Aborted as the connection closes: a login attempt waiting for its turn to be judged gives it up. */
  private readonly gone = new AbortController();
  private banned = false;
  /** Good credentials were given, though no session opened: the deadline then scores nothing. Ends at logout. */
  private vouched = false;
  /**
   * Nothing to score as held time when the connection closes (see dispose):
   * a failure of it was scored (a failed login, the deadline), or its login
   * was refused for no doing of the client's that anyone could repeat (the
   * server failed, or a user's good password met that user's session limit).
   * Anonymous FTP's limit does not settle it: anyone can meet that one.
   */
  private settled = false;
  /**
   * A login that succeeded (audited as one) and has not opened a session yet:
   * one that never will (refused, replaced by another login, the connection
   * gone first) is recorded as its end, so every login record has a logout.
   */
  private pending: { req: AuthRequest; user: string } | null = null;
  /** A login attempt is being heard (see attempt). */
  private hearing = false;
  /** The one attempt waiting for its turn: how to start it, or to refuse it when a newer one replaces it. */
  private waiting: { start(): void; refuse(err: AuthError): void } | null = null;
  /** The first session of a login while it opens: further ones (SFTP channels opened at once) wait for it (see enter). */
  private opening: Promise<unknown> | null = null;

  constructor(
    private readonly gate: Gate,
    private readonly socket: Socket,
    readonly ip: string,
    /** The client's port: its PROXY header's from a balancer, else the socket's. */
    readonly port: number,
    /**
     * What the client is counted as: its address, or its IPv6 network
     * (limits.ipv6Prefix), as connection limits and bans count it; a limit
     * of a front-end's own per address counts by it too.
     */
    readonly source: string,
    private readonly protocol: Protocol,
    /** The version of the PROXY header the connection came with; none: it came direct. */
    private readonly proxy?: 1 | 2,
  ) {
    this.arm();
  }

  /**
   * A data connection of this client's: its client address, read as the
   * control connection's was (null: closed). Under `optional`, that of a
   * client that came direct from a trusted address (a host of the balancers'
   * own) comes without a header, and its first bytes are its own, kept
   * whatever they look like (found by a review: an upload that began with a
   * PROXY line naming the client was stored without it, and an empty one, or
   * one that began with CRLF, waited for a header until the data timeout and
   * failed); but a connection the balancer forwarded comes from that host's
   * address too, and is told by the header it begins with (hostOrForwarded).
   * Any other client's may come either way, as its control connection could:
   * through a balancer with a header, or direct (passive ports reached
   * without the balancer, which forwards the control port only).
   */
  async dataOrigin(socket: Socket): Promise<string | null> {
    const mode = this.gate.proxyMode(this.protocol);
    const onBalancerHost = mode === 'optional' && this.proxy === undefined && this.gate.trusts(this.socket);
    return (await (onBalancerHost ? this.gate.hostOrForwarded(socket) : this.gate.originAs(socket, mode)))?.address ?? null;
  }

  /** What the front-end says when the login deadline passes (the socket is destroyed shortly after regardless). */
  whenExpired(goodbye: () => void): void {
    this.onExpired = goodbye;
  }

  /**
   * Failed logins have reached auth.maxTries, unknown keys MAX_KEY_OFFERS,
   * or the address is banned: the front-end closes the connection. The ban
   * is looked up, not only remembered: connections opened before it (by this
   * address's failures anywhere, or by `sluice ban add`) would otherwise keep
   * guessing, auth.maxTries each.
   */
  get exhausted(): boolean {
    return (
      this.banned ||
      this.failures >= this.gate.settings.auth.maxTries ||
      this.keyOffers >= MAX_KEY_OFFERS ||
      this.gate.bans.banned(this.ip)
    );
  }

  /**
   * `exhausted`, or the address is under a ban the store could not take (its
   * disk full), which is the defender's alone: the store's look-up in
   * `exhausted` cannot see it. Found by an adversarial review: a connection
   * opened before such a ban logged in with the right password after it, and
   * was told which keys the user has, where a stored ban refuses both. Asked
   * before a login's work and again at its claim (a ban may come meanwhile).
   */
  private async refusing(): Promise<boolean> {
    if (this.exhausted) return true;
    if (!(await this.gate.coordinator.heldBan(this.source))) return false;
    this.banned = true;
    return true;
  }

  /** Protocol abuse or a failed handshake before login, seen by the front-end: scored by the defender. */
  offence(offence: Offence): void {
    void this.score(offence, this.protocol);
  }

  private async score(offence: Offence, protocol: Protocol): Promise<void> {
    try {
      if (await this.gate.coordinator.score(this.ip, protocol, offence)) this.banned = true;
    } catch (err) {
      // Unscored (the coordinator is gone or failed): the failure itself is still refused and counted per connection.
      this.gate.log.error({ err, ip: this.ip }, 'offence not scored');
    }
  }

  /** A TLS or SSH handshake that failed before login: an offence, unless the client turned us down (see declined). */
  handshakeFailed(err: unknown): void {
    if (!declined(err)) this.offence('handshake-failed');
  }

  /** `withdrawn`: the client replaced this request meanwhile; if it has by its turn, it is not verified. */
  async password(login: LoginRequest, password: string, withdrawn?: AbortSignal): Promise<Account> {
    const req = { ...login, remoteAddress: this.ip };
    return this.attempt(req, () => this.gate.authenticator.password(req, password, this.claim), withdrawn);
  }

  /**
   * An SSH client asking whether a key would do, before it signs: no login,
   * not audited (an agent offering its keys one by one is no attack), but a
   * key the user does not have counts, and the MAX_KEY_OFFERS-th exhausts
   * the connection and is scored as one failed login, so reconnecting for
   * more is bounded by the defender. Unbounded, it was a free test of which
   * public key a user has: 199 keys in 0.3 s on one connection (found by a
   * review). A connection that asked and then left without logging in is
   * scored once as it closes (see dispose).
   */
  async offerKey(login: LoginRequest, blob: Buffer): Promise<void> {
    if (await this.refusing()) throw new AuthError('too-many-tries');
    this.keysAsked++;
    const began = performance.now();
    try {
      await this.gate.authenticator.publicKey({ ...login, remoteAddress: this.ip }, blob, false);
    } catch (err) {
      if (err instanceof AuthError && ++this.keyOffers === MAX_KEY_OFFERS) await this.score('login-failed', login.protocol);
      await answerMoment(began, KEY_REFUSAL_MS);
      throw err;
    }
  }

  /**
   * A public key the client signed without asking first: refused, as the
   * question the client could have asked (offerKey), unless it is the user's.
   * One that is not (nor any user's) is counted among the connection's
   * unknown keys and answered as soon, not as a failed login: paramiko signs
   * every key it tries, the one it was given, the agent's and ~/.ssh's, before
   * the password, and each was audited, delayed auth.failureDelay and scored,
   * so an Ansible or Airflow host with a key of its own at hand was banned at
   * its fifth password login (found driving paramiko). Such a key proves no
   * more signed than asked about. OpenSSH's PerSourcePenalties count a
   * connection that failed to log in, as dispose does; fail2ban counts no
   * publickey failure. A stored key too weak to log in with is the user's:
   * its signed login fails as one (weak-key). Thrown as offerKey throws, so
   * that the front-end ends the connection at the MAX_KEY_OFFERS-th as after a
   * question (returned as a refusal, the connection stayed open, each later
   * attempt refused unheard until the login deadline).
   */
  async ownKey(login: LoginRequest, blob: Buffer): Promise<void> {
    try {
      await this.offerKey(login, blob);
    } catch (err) {
      if (!(err instanceof AuthError && err.reason === 'weak-key')) throw err;
    }
  }

  /** A public key whose signature verified. */
  async publicKey(login: LoginRequest, blob: Buffer): Promise<Account> {
    const req = { ...login, remoteAddress: this.ip };
    return this.attempt(req, () => this.gate.authenticator.publicKey(req, blob, true, this.claim));
  }

  /**
   * A public-key login only the front-end can see fail (a signature that did
   * not verify, or one by an algorithm not accepted): a failure like any
   * other, delayed, counted and scored.
   */
  refusePublicKey(login: LoginRequest, reason: 'bad-signature' | 'weak-algorithm'): Promise<never> {
    const req = { ...login, remoteAddress: this.ip };
    return this.attempt(req, () => this.gate.authenticator.refuse(req, 'publickey', reason)) as Promise<never>;
  }

  /**
   * After good credentials, open the account's session: only once it is open
   * is the client logged in and the deadline stopped. If it cannot be opened
   * (a missing home), the slot taken for it is freed and the deadline keeps
   * running, for a retry once the home is back. That is not scored, neither
   * now nor when the deadline passes, since it is no fault of the client's,
   * but it counts toward auth.maxTries, which bounds the retries (and their
   * log lines) on one connection; it is logged for the operator, who alone
   * can mend it.
   */
  async enter<T>(user: string, open: () => Promise<T>): Promise<T> {
    // Until a session of the login is open, its sessions open one at a time: if the first cannot open, the
    // login has ended (its logout recorded, its slot freed), and a channel opened together with it must not
    // open a session of it afterwards, without a slot and after its logout; found when the home came back
    // while such channels were still opening, and each recorded a logout of its own.
    while (!this.inSession && this.opening) await this.opening.catch(() => undefined);
    if (!this.inSession && (this.closed || !this.pending)) throw new SluiceError('failure', undefined, 'the login ended before this session opened');
    const opened = this.open(user, open);
    if (!this.inSession) this.opening = opened;
    try {
      return await opened;
    } finally {
      if (this.opening === opened) this.opening = null;
    }
  }

  private async open<T>(user: string, open: () => Promise<T>): Promise<T> {
    try {
      const session = await open();
      this.inSession = true;
      this.pending = null;
      if (this.deadline) clearTimeout(this.deadline);
      this.deadline = null;
      return session;
    } catch (err) {
      // An SFTP connection with a session already open keeps its slot for that one.
      if (!this.inSession) this.freeSlot();
      this.vouched = true;
      this.failures++;
      const reason = err instanceof SluiceError ? (err.detail ?? err.message) : String(err);
      this.gate.log.warn({ user, ip: this.ip, reason }, 'session not opened');
      // A further SFTP channel of a connection whose session is open ends nothing: its logout comes with that
      // session's. The logout ends the login, once: channels opened together fail together (found by a review).
      if (!this.inSession) this.endPending(reason);
      throw err;
    }
  }

  /** A session has been opened (enter) and not logged out of. */
  get loggedIn(): boolean {
    return this.inSession;
  }

  /**
   * FTP REIN and AUTH TLS: logged out but still connected, so the login
   * deadline runs again, and the connection is judged from here as a new
   * one: the vouch of the login that ended does not outlive it. Kept, an
   * anonymous login (which anyone can make) followed by REIN held a place
   * until the deadline, unscored there and at the close, again and again
   * (found by a review: 60 login timeouts in 3 rounds, never banned).
   */
  logout(): void {
    if (!this.userSlot) return;
    this.freeSlot();
    this.inSession = false;
    this.attempted = false;
    this.vouched = false;
    this.settled = false;
    this.arm();
  }

  /** The socket closed: stop the timer, free the user's session slot. */
  dispose(): void {
    this.closed = true;
    this.gone.abort();
    // Only asked which keys would do, and left without attempting a login (one attempted was judged as it
    // ended: a failure scored, the session limit not): one failed login, as OpenSSH's PerSourcePenalties
    // count such a connection. Before (found by a review), a client asking 9 keys a connection and
    // reconnecting was never scored: any number of public keys tried against a user, and the answer's
    // timing read for which names exist.
    if (this.keysAsked > 0 && !this.attempted && this.keyOffers < MAX_KEY_OFFERS) void this.score('login-failed', this.protocol);
    // Held its slot, then left with no session and nothing scored: its time counts toward login timeouts of
    // its source (HeldTime). Found by reviews: connections that sent nothing and closed just before the
    // deadline, and came back at once, were never scored, and 25 addresses of 20 such connections held every
    // one of the server's 500 places, so no user could log in, for as long as they went on. A login attempt
    // does not excuse it unless scored or settled: before (found by a review), one refused at anonymous FTP's
    // session limit (kept full by the same address's own sessions) held its place as long, unscored.
    else if (!this.settled && !this.vouched && !this.inSession) {
      for (let n = this.gate.heldWithoutLogin.add(this.source, performance.now() - this.armedAt); n > 0; n--) this.offence('login-timeout');
    }
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    // A session opening now records its own end, whichever way it goes (see open).
    if (!this.inSession && !this.opening) this.endPending('the client closed the connection first');
    this.freeSlot();
  }

  /** A login that will open no session: its end recorded (once), its slot freed. */
  private endPending(reason: string): void {
    if (this.pending) this.gate.authenticator.notOpened(this.pending.req, this.pending.user, reason);
    this.pending = null;
    this.freeSlot();
  }

  private freeSlot(): void {
    this.userSlot?.();
    this.userSlot = null;
  }

  /** The per-user session limit, checked by the authenticator once the credentials are good. */
  private readonly claim: Claim = async (user, method, limits: SessionLimits = {}) => {
    // A login that completes after its connection closed must not take a slot nobody frees.
    if (this.closed) return 'closed';
    // Banned while its password waited for a hash slot and was verified: refused as any failure is, and as
    // late (attemptNow), so the answer does not tell a right guess. Before (found by a review), a burst of
    // guesses on maxSessionsPerIp connections had every one verified after the ban, and the right one got in.
    if (await this.refusing()) return 'exhausted';
    if (this.closed) return 'closed';
    const slot = await this.gate.coordinator.claimUser(user, limits.max, limits.perSource === undefined ? undefined : { source: this.source, max: limits.perSource });
    if (slot && this.closed) slot();
    if (this.closed) return 'closed';
    this.userSlot = slot;
    // Told by how the login was made, not by the name: a user named `anonymous` before the name was reserved
    // logs in with its own password (found by a review).
    const anonymous = method === 'anonymous';
    // A user's own limit, met with its good password: neither scored nor held against the source (see settled).
    if (!slot && !anonymous) this.settled = true;
    // Anonymous FTP's limit, met: the time it took to come here was a login's, not a place held for nothing. What
    // the connection holds from now on counts (a busy public server refuses clients that retry, and each retry's
    // round trips, summed from the connect, would add up to a ban: found by a review).
    if (!slot && anonymous) this.armedAt = performance.now();
    return slot ? 'ok' : 'limit';
  };

  /**
   * One login attempt at a time per connection, each checked against the
   * limits when its turn comes. An SSH client may send requests without
   * waiting for answers (ssh2 starts a keyboard-interactive one while the last
   * is still being verified), and attempts that ran side by side were each
   * checked before any had failed: one connection had 300 passwords verified
   * at once, past auth.maxTries, every other login queued behind them (found
   * by a review), and two that succeeded took two session slots, one of them
   * never freed. One attempt waits at most: a newer one replaces it, refused
   * as withdrawn, so a client sending requests faster than they are heard
   * queues nothing (only such an SSH client sends more than one, and each of
   * its requests withdrew the one before anyway).
   */
  private attempt(req: AuthRequest, login: () => Promise<Account>, withdrawn?: AbortSignal): Promise<Account> {
    return new Promise((resolve, reject) => {
      const start = () => {
        this.hearing = true;
        void this.attemptNow(req, login, withdrawn)
          .then(resolve, reject)
          .finally(() => {
            this.hearing = false;
            const next = this.waiting;
            this.waiting = null;
            next?.start();
          });
      };
      if (!this.hearing) return start();
      this.waiting?.refuse(new AuthError('withdrawn'));
      this.waiting = { start, refuse: reject };
    });
  }

  private async attemptNow(req: AuthRequest, login: () => Promise<Account>, withdrawn: AbortSignal | undefined): Promise<Account> {
    const done = await this.gate.turnToJudge(this.source, this.gone.signal).catch(() => {
      throw new AuthError('connection-closed');
    });
    try {
      return await this.judged(req, login, withdrawn);
    } finally {
      done();
    }
  }

  private async judged(req: AuthRequest, login: () => Promise<Account>, withdrawn: AbortSignal | undefined): Promise<Account> {
    if (this.closed) throw new AuthError('connection-closed');
    if (withdrawn?.aborted) throw new AuthError('withdrawn');
    if (await this.refusing()) throw new AuthError('too-many-tries');
    if (this.closed) throw new AuthError('connection-closed');
    // Every login ends at once when it can open nothing (below), so none should be pending here; if one
    // ever were, the claim would overwrite its session slot, never freed.
    if (this.pending && !this.inSession) this.endPending('another login of the connection replaced it');
    this.attempted = true;
    const began = performance.now();
    try {
      const account = await login();
      this.vouched = true;
      this.pending = { req, user: account.name };
      // Gone, or replaced by the client, while it was verified: this login will open nothing, and ends now.
      if (this.closed || withdrawn?.aborted) {
        this.endPending(this.closed ? 'the client closed the connection first' : 'the client replaced the request');
        throw new AuthError(this.closed ? 'connection-closed' : 'withdrawn');
      }
      return account;
    } catch (err) {
      // None is the client's fault: good credentials, no slot free, nobody left to log in, or not heard. Only
      // the server's failure settles the held time by itself (a limit settles it in claim, the others end or
      // replace the attempt): a client can bring the rest about at will.
      if (!(err instanceof AuthError)) this.settled = true;
      // The server's own answer that no login can be served now (its user store away, or a statement of it
      // refused): said here once for every protocol, with its cause. FTP answered 451 and logged nothing, so a
      // refusal a loaded test run saw twice could not say why (it was a deadlock between two statements).
      if (err instanceof SluiceError) {
        this.gate.log.warn({ user: req.username.slice(0, 64), ip: this.ip, protocol: req.protocol, err: err.message, detail: err.detail }, 'login not possible now');
      }
      if (!(err instanceof AuthError) || err.reason === 'session-limit' || err.reason === 'connection-closed' || err.reason === 'withdrawn') throw err;
      this.failures++;
      this.settled = true;
      await this.score('login-failed', req.protocol);
      await answerMoment(began, this.gate.settings.auth.failureDelay * 1000);
      throw err;
    }
  }

  private arm(): void {
    this.armedAt = performance.now();
    this.deadline = setTimeout(() => {
      this.gate.log.info({ ip: this.ip }, 'login timeout');
      this.attempted = true;
      this.settled = true;
      if (!this.vouched) this.offence('login-timeout');
      this.onExpired();
      setTimeout(() => this.socket.destroy(), GOODBYE_MS).unref();
    }, this.gate.settings.limits.loginTimeout * 1000);
    this.deadline.unref();
  }
}
