import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Logger } from 'pino';
import type ssh2 from 'ssh2';
import type { Services } from '../app.js';
import { AuthError, type AuthRequest } from '../auth/authenticator.js';
import { fingerprint } from '../auth/public-keys.js';
import type { HostKeyFile } from '../certs/ensure.js';
import { StartRefused, listenOn, type Listening } from '../listening.js';
import type { Account } from '../session/account.js';
import type { Guest } from '../security/gate.js';
import { RefusalLog } from '../security/refusals.js';
import { SluiceError } from '../session/errors.js';
import { Session } from '../session/session.js';
import { SharedLogin } from '../session/shared-login.js';
import { ByteBudget } from './budget.js';
import { SftpChannel } from './channel.js';
import { DISCONNECT, endTelling, endsItsSocket, ServedChannels, tellClient } from './connection-end.js';
import { RekeyAllowance, heldDuringKeyExchange, watchKeyExchanges } from './rekeys.js';
import { acceptRepeatedUserauth } from './service-requests.js';
import { MIN_CLIENT_PACKET, WindowPool, acceptWithWindow, channelWindow, clientMaxPacket, ownWindow, type PoolMember } from './window.js';
import { parseExecCommand, type ExecCommand } from '../exec/command.js';
import { runHashCommand } from '../exec/hash-command.js';
import { CommandError } from '../exec/words.js';
import { runScp } from '../scp/run.js';
import { scpFailure } from '../scp/wire.js';
import { ssh2Library } from '../ssh2.js';
import { READ_SLACK, readOnlyWhileSent, TransportBacklog } from '../wire/backlog.js';
import { destroyAfterGoodbye, GOODBYE_MS } from '../wire/goodbye.js';

const METHODS: ssh2.AuthenticationType[] = ['publickey', 'password', 'keyboard-interactive'];

/**
 * The host keys as ssh2 should offer them. ssh2 derives the offered names from
 * each key's type and always adds SHA-1 `ssh-rsa` for an RSA key, whatever the
 * configured list says; so the RSA key is presented once per configured
 * rsa-sha2 name instead (the public key and its signatures are the same; the
 * negotiated name picks the hash), and `ssh-rsa` is offered only if listed.
 */
function hostKeysFor(files: readonly HostKeyFile[], allowed: readonly string[]): { key: ssh2.ParsedKey }[] {
  const keys: { key: ssh2.ParsedKey }[] = [];
  for (const file of files) {
    const key = parsedHostKey(file);
    if (key.type !== 'ssh-rsa') {
      if (allowed.includes(key.type)) keys.push({ key });
      continue;
    }
    for (const name of allowed.filter((a) => a === 'ssh-rsa' || a.startsWith('rsa-sha2-'))) {
      keys.push({ key: new Proxy(key, { get: (target, prop) => (prop === 'type' ? name : Reflect.get(target, prop, target)) }) });
    }
  }
  return keys;
}

/** A host key file's key as ssh2 parses it; refuses, naming the file, when it does not parse. */
function parsedHostKey(file: HostKeyFile): ssh2.ParsedKey {
  const parsed = ssh2Library().utils.parseKey(file.data);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new StartRefused(`SSH host key ${file.name} (in ${file.dir}) cannot be used: ${key instanceof Error ? key.message : 'no key in the file'}`);
  }
  // An Ed25519 key copied into the RSA slot served two Ed25519 keys and no RSA one: clients that know this
  // host by its RSA key were refused, while the files looked complete (found by a review).
  if (key.type !== file.keyType) {
    throw new StartRefused(`SSH host key ${file.name} (in ${file.dir}) cannot be used: it holds an ${key.type} key, not ${file.keyType}`);
  }
  return key;
}

/** The algorithm a public-key request signs with: ssh2 names every RSA key `ssh-rsa` and reports the hash apart. */
function signatureAlgorithm(ctx: ssh2.PublicKeyAuthContext): string {
  if (ctx.key.algo !== 'ssh-rsa') return ctx.key.algo;
  if (ctx.hashAlgo === 'sha512') return 'rsa-sha2-512';
  if (ctx.hashAlgo === 'sha256') return 'rsa-sha2-256';
  return 'ssh-rsa';
}

/** What the connection's transport has not sent (see TransportBacklog); every writer on the connection waits on it. */
function transportBacklog(client: ssh2.Connection, log: Logger): TransportBacklog {
  const socket = (client as unknown as { _sock?: unknown })._sock;
  if (socket instanceof net.Socket) return new TransportBacklog(socket, heldDuringKeyExchange(client));
  log.error('ssh2 connection without a socket: unsent bytes are not counted');
  return new TransportBacklog(null);
}

/** The byte budget of one connection, counting what its socket has not sent besides what its channels hold. */
function connectionBudget(backlog: TransportBacklog, limit: number): ByteBudget {
  const budget = new ByteBudget(limit, () => backlog.size);
  backlog.onDrain(() => budget.wake());
  return budget;
}

/**
 * ssh2 hands the socket each SSH packet on its own (OpenSSH clients take at
 * most 32 KiB a packet): one write system call, and one trip through the
 * TCP stack, per packet. Packets written in one turn of the event loop (a
 * 255 KiB READ reply is eight) go out as one writev instead.
 */
function coalesceWrites(socket: net.Socket): void {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  const flush = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = ((...args: unknown[]): boolean => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(flush);
    }
    return write(...args);
  }) as typeof socket.write;
}

/**
 * A public key as the client sent it: ssh2's parser returns an Error for
 * most malformed blobs but throws for some (an ssh-rsa key of empty fields),
 * and a throw was an unexpected error, logged with its stack and answered
 * at once, uncounted, as often as a client sent one (found by a review).
 */
function clientKey(data: Buffer): ssh2.ParsedKey | Error {
  try {
    return ssh2Library().utils.parseKey(data);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** What the SFTP front-end takes besides the shared services. */
export interface SftpOptions {
  /** Private host keys, read at start and again at each reload (certs/ensure.ts): this layer touches no file. */
  readonly hostKeys: () => Promise<readonly HostKeyFile[]>;
}

/** Per connection: who it is, how often it failed, and its timers. */
interface ConnectionState {
  readonly id: string;
  readonly ip: string;
  readonly port: number;
  readonly log: Logger;
  readonly guest: Guest;
  account: Account | null;
  /** SYMLINK arrives as (target, link): see HandlerContext.symlinkTargetFirst. */
  symlinkTargetFirst: boolean;
  /** Requests refused (forwarding, shells, subsystems, exec, channels past the limit): a few logged, then counted. */
  readonly refusals: RefusalLog;
  /**
   * The session channels open now, each aborted when it or the connection
   * closes (see openSession): one 'close' listener on the connection for
   * them all, and nothing kept of a channel once it is gone.
   */
  readonly channels: Set<AbortController>;
  /** Its channels' sessions, as the shared layer ends them: together. */
  readonly sessions: ServedChannels;
}

function refused(state: ConnectionState, fields: object, msg: string): void {
  state.refusals.warn(fields, msg);
}

/**
 * An scp that cannot run (a wildcard, shell syntax) says why in its protocol,
 * as OpenSSH's remote scp does (run_err): on stderr, a client that reads only
 * the protocol (asyncssh) said "Connection lost". The channel is not closed
 * at once: a client asking for files (scp -f here) sends its first byte
 * before it reads, and asyncssh took that write's failure on a closed channel
 * for a lost connection. The client closes it once it has the reply;
 * GOODBYE_MS bounds the wait. Closed on that first byte instead, asyncssh had
 * its close crossed by a window adjust and ended the whole connection.
 */
function scpRefused(channel: ssh2.ServerChannel, message: string): void {
  channel.write(scpFailure(message, true));
  channel.exit(1);
  channel.eof();
  // Read and dropped: what the client sends (its first byte) must not wait unread.
  channel.resume();
  const close = (): void => {
    clearTimeout(timer);
    channel.close();
  };
  const timer = setTimeout(close, GOODBYE_MS).unref();
  channel.once('end', close).once('close', close);
}

/** Settles a turn of the event loop later: what a command wrote to its channel in this turn is on it by then. */
function aTurnLater(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Per logged-in connection, from its first session channel on. */
interface ChannelLimits {
  /** Session channels open now (sftp.maxChannelsPerConnection). */
  channels: number;
  /** What the connection's SFTP channels may hold in memory, together (sftp.maxQueuedBytes). */
  readonly budget: ByteBudget;
  /** What its socket has not sent: SCP downloads wait while it holds sftp.maxQueuedBytes. */
  readonly backlog: TransportBacklog;
  /** Their SSH windows, together as much again. */
  readonly windows: WindowPool;
}

/**
 * The SSH front-end: ssh2 for transport and authentication, our own SFTP
 * codec on the raw `sftp` subsystem channel. ssh2 enforces neither a limit
 * on authentication attempts nor a login grace time, and tells us of a
 * connection only once its banner arrived: so we listen ourselves, admit
 * each socket through the gate at accept (counted, deadline running), and
 * only then hand it to ssh2.
 * Only the sftp subsystem is served; shell, exec, pty, forwarding are refused.
 */
export class SftpFrontEnd {
  readonly name = 'sftp';
  /** Takes the connections admitted from now on; replaced at a reload (connections made before keep theirs). */
  private server: ssh2.Server;
  private readonly listener: net.Server;
  readonly listeners: Listening[] = [];
  private readonly clients = new Set<ssh2.Connection>();
  /** Each channel's session until it is closed and its end recorded: a server stopping waits for them. */
  private readonly running = new Set<Promise<void>>();
  /** Admitted sockets ssh2 has not yet announced (no banner yet), by remote address and port. */
  private readonly admitted = new Map<string, { guest: Guest; socket: net.Socket }>();
  private closing = false;
  /** Settles once the listener is closed and its connections are gone. */
  private listenerClosed: Promise<unknown> | null = null;
  private readonly limits = new WeakMap<ssh2.Connection, ChannelLimits>();
  private readonly log: Logger;

  private constructor(
    private readonly services: Services,
    private readonly options: SftpOptions,
    hostKeys: readonly HostKeyFile[],
  ) {
    this.log = services.log.child({ frontEnd: 'sftp' });
    this.server = this.sshServer(hostKeys);
    this.listener = net.createServer((socket) => void this.admit(socket));
  }

  /**
   * ssh2's server with `hostKeys`: it reads them once, when made, so a reload
   * makes another for the connections that come after it.
   */
  private sshServer(hostKeys: readonly HostKeyFile[]): ssh2.Server {
    const { algorithms } = this.services.config.sftp;
    const server = new (ssh2Library().Server)(
      {
        hostKeys: hostKeysFor(hostKeys, algorithms.serverHostKey),
        ident: 'sluice',
        algorithms: {
          kex: algorithms.kex as ssh2.KexAlgorithm[],
          cipher: algorithms.cipher as ssh2.CipherAlgorithm[],
          hmac: algorithms.hmac as ssh2.MacAlgorithm[],
          serverHostKey: algorithms.serverHostKey as ssh2.ServerHostKeyAlgorithm[],
          compress: ['none'],
        },
      },
      (client, info) => this.accept(client, info),
    );
    server.on('error', (err: Error) => this.log.error({ err }, 'ssh server error'));
    return server;
  }

  static async start(services: Services, options: SftpOptions): Promise<SftpFrontEnd | null> {
    if (services.config.sftp.port === 0) return null;
    const fe = new SftpFrontEnd(services, options, await options.hostKeys());
    await listenOn(fe.listener, 'SFTP', { host: services.config.bind, port: services.config.sftp.port });
    // After the listen: its refusal is the start's failure, said once.
    fe.listener.on('error', (err) => fe.log.error({ err }, 'listener error'));
    const { address, port } = fe.listener.address() as net.AddressInfo;
    fe.listeners.push({ protocol: 'sftp', address, port });
    return fe;
  }

  /**
   * SIGHUP: the host keys read again. Before, only the TLS certificate was,
   * and the admin API showed the new key's fingerprint while clients were
   * still offered the old one (found by an operator's review). A key that
   * does not parse keeps the old ones in use.
   */
  reload(): void {
    this.options
      .hostKeys()
      .then((keys) => {
        this.server = this.sshServer(keys);
        // sshServer parsed each key already: none throws here.
        const fingerprints = keys.map((k) => `${k.name} ${fingerprint(parsedHostKey(k).getPublicSSH())}`);
        this.log.info({ fingerprints }, `SSH host keys reloaded: ${fingerprints.join(', ')}`);
      })
      .catch((err: unknown) => this.log.error({ err }, 'SSH host key reload failed; the old keys stay in use'));
  }

  /** Counted and timed from accept, before the client has sent a byte. */
  private async admit(socket: net.Socket): Promise<void> {
    socket.on('error', () => undefined);
    const guest = await this.services.gate.admit(socket, 'sftp');
    if (!guest) return;
    // Admitted while the front-end was closing: nothing would end this connection.
    if (this.closing) return void socket.destroy();
    const key = `${socket.remoteAddress}|${socket.remotePort}`;
    this.admitted.set(key, { guest, socket });
    socket.once('close', () => this.admitted.delete(key));
    // SSH is request and reply: with Nagle, a reply written while an earlier packet is
    // unacknowledged waits for the client's delayed ACK (40 ms on Linux), and logins took
    // 27 or 70 ms by chance. Writes are batched per turn already (coalesceWrites).
    socket.setNoDelay(true);
    // ssh2's end() only ends this side: a client that never closed its own kept the connection for ever.
    destroyAfterGoodbye(socket);
    coalesceWrites(socket);
    readOnlyWhileSent(socket, this.services.config.sftp.maxQueuedBytes + READ_SLACK);
    // Until ssh2 has a client object, the deadline can only drop the socket (the gate destroys it).
    this.server.injectSocket(socket);
  }

  private accept(client: ssh2.Connection, info: ssh2.ClientInfo): void {
    // A reset connection must never take the process down (ssh2#902).
    client.on('error', (err: Error) => this.log.debug({ err: err.message }, 'ssh client error'));
    const key = `${info.ip}|${info.port}`;
    const admitted = this.admitted.get(key);
    if (!admitted) {
      // Only sockets we admitted reach ssh2; one missing here closed in between.
      client.end();
      return;
    }
    const { guest, socket } = admitted;
    endsItsSocket(client, socket);
    // A handshake or protocol error before login (garbage, a broken key exchange) is scored; a declined one or a reset is not.
    client.on('error', (err: Error & { level?: string }) => {
      if (!client.authenticated && (err.level === 'handshake' || err.level === 'protocol')) guest.handshakeFailed(err);
    });
    this.admitted.delete(key);
    const ip = guest.ip;
    this.clients.add(client);
    const id = randomUUID();
    guest.whenExpired(() => client.end());
    const log = this.log.child({ conn: id, ip });
    const state: ConnectionState = {
      id,
      ip,
      port: guest.port,
      log,
      guest,
      account: null,
      // OpenSSH's order is the de facto standard (OpenSSH, libssh2/curl, ...); ssh2, WinSCP, asyncssh
      // and libssh (not libssh2: `libssh_`, KDE's kio-sftp, Remmina) switch to the draft's order when
      // the server is not OpenSSH.
      symlinkTargetFirst: !/^(ssh2js|WinSCP|AsyncSSH|libssh_)/i.test(info.header.versions.software),
      refusals: new RefusalLog(log),
      channels: new Set(),
      sessions: new ServedChannels(client, log),
    };
    this.limitKeyExchanges(client, state);
    acceptRepeatedUserauth(client);
    const { sftp } = this.services.config;
    const idle = setTimeout(() => {
      // A checksum under way (SFTP check-file, a checksum command) is no idleness: see Session.hashing.
      if (state.sessions.hashing) return void idle.refresh();
      state.log.info('idle timeout');
      client.end();
    }, sftp.idleTimeout * 1000);
    idle.unref();

    client.on('authentication', (ctx) => void this.authenticate(client, state, ctx));
    client.on('ready', () => {
      // The login stands from here until the connection closes, with channels open or not: ending its
      // user's sessions, or banning its address, ends it too (LiveRegistry.login).
      const context = { protocol: 'sftp', remoteAddress: state.ip, remotePort: state.port } as const;
      const standing = this.services.sessionDeps.live.login({ id: state.id, account: state.account as Account, context, since: new Date() }, state.sessions);
      // Its logout too, once, when the connection has closed and its channels' sessions have ended (SharedLogin).
      const login = new SharedLogin();
      state.sessions.login = login;
      client.once('close', () => {
        standing();
        login.disconnected();
      });
      client.on('session', (accept, reject) => this.openSession(client, state, accept, reject, () => idle.refresh()));
    });
    // Everything else a client may ask for is refused.
    client.on('tcpip', (_accept, reject) => {
      refused(state, {}, 'direct-tcpip refused');
      reject();
    });
    client.on('openssh.streamlocal', (_accept, reject) => {
      refused(state, {}, 'streamlocal refused');
      reject();
    });
    client.on('request', (_accept, reject, name) => {
      refused(state, { request: name }, 'global request refused');
      reject?.();
    });
    client.on('close', () => {
      for (const channel of state.channels) channel.abort();
      clearTimeout(idle);
      this.clients.delete(client);
      state.refusals.close();
    });
  }

  /**
   * Key re-exchanges past the connection's allowance (see RekeyAllowance) end
   * it, refused before ssh2 does any of the work. An ssh2 whose packets
   * cannot be watched so serves no connection, as one whose windows cannot
   * be set (acceptWithWindow): there was a fallback on ssh2's 'rekey' event,
   * which comes once an exchange is done, but no ssh2 this server installs
   * lacks the watch, so it never ran, and nothing tested it (found by a
   * review).
   *
   * A re-exchange not done within limits.loginTimeout of the client's answer
   * to the server's KEXINIT (see KeyExchangeWatch.answered) ends the
   * connection too: from there it is a round trip and the server's own work,
   * milliseconds unless its client is dead or stalls it on purpose. Before,
   * a client that began one and sent no more held its connection until its
   * idle timeout (found by a review): nothing but the exchange may pass
   * meanwhile, so no request refreshes that either. Not from the client's
   * KEXINIT: the server's own goes out behind all it had queued, on a slow
   * link the client's whole window of a download (2 MiB for OpenSSH's sftp:
   * 30 s at 70 KB/s), so a download re-keying by volume was cut (found by a
   * review). A client that stops reading before its answer is one that
   * stopped reading, left to its idle timeout as any other.
   */
  private limitKeyExchanges(client: ssh2.Connection, state: ConnectionState): void {
    const allowance = new RekeyAllowance();
    const { loginTimeout } = this.services.config.limits;
    let started = 0;
    let unfinished: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(unfinished);
      unfinished = undefined;
    };
    client.on('rekey', done);
    client.on('close', done);
    const watch = {
      started: (): boolean => {
        started++;
        if (allowance.take()) return true;
        refused(state, { rekeys: started }, 'key re-exchange refused: too many on this connection; connection closed');
        client.end();
        return false;
      },
      answered: (): void => {
        unfinished ??= setTimeout(() => {
          state.log.warn({ rekeys: started }, `key re-exchange not finished within ${loginTimeout} s of the client's answer; connection closed`);
          client.end();
        }, loginTimeout * 1000).unref();
      },
    };
    if (watchKeyExchanges(client, watch)) return;
    state.log.error('cannot watch key re-exchanges with this ssh2 version; connection closed');
    client.end();
  }

  private async authenticate(client: ssh2.Connection, state: ConnectionState, ctx: ssh2.AuthContext): Promise<void> {
    const req: AuthRequest = {
      username: ctx.username,
      protocol: 'sftp',
      remoteAddress: state.ip,
      remotePort: state.port,
      connection: state.id,
    };
    const { guest } = state;
    // No hearing once the attempts are used up or the address banned, and the end that says so: for attempts
    // already on the wire when the limit was reached, the connection is ending already; a ban that came between
    // two attempts (the address's failures elsewhere, `sluice ban add`) had the next refused with an empty list of
    // methods and the connection left open until the login deadline (found by an adversarial review).
    if (guest.exhausted) return endTelling(client, DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE, 'Too many authentication failures');
    try {
      switch (ctx.method) {
        case 'password':
          // A request to change the password (RFC 4252 8) carries the old one and a new one: sluice changes
          // none (as OpenSSH's server), so it is a wrong password, counted, delayed and audited as one. Passed
          // on as ssh2 gives it (an object), it threw in the password cache for a user in it, uncounted, and its
          // 1 ms answer against 1 s told who had logged in lately (found by a review).
          state.account = await guest.password(req, typeof ctx.password === 'string' ? ctx.password : '');
          return ctx.accept();
        case 'keyboard-interactive': {
          // A client's next request before this one's answer withdraws it (RFC 4252; ssh2 then ignores our
          // decision, and hands the prompt an Error if it was not answered yet).
          const withdrawn = new AbortController();
          ctx.once('abort', () => withdrawn.abort());
          const answers = await new Promise<unknown>((resolve) => ctx.prompt([{ prompt: 'Password: ', echo: false }], '', '', resolve));
          if (!Array.isArray(answers)) return;
          state.account = await guest.password(req, String(answers[0] ?? ''), withdrawn.signal);
          return ctx.accept();
        }
        case 'publickey': {
          const accepted: readonly string[] = this.services.config.sftp.algorithms.userAuthSignatures;
          const key = clientKey(ctx.key.data);
          // SHA-1 `ssh-rsa` (or any unlisted algorithm) is refused before the key is even looked at. The
          // name is the client's word and the key's own type decides how its signature is checked: an RSA
          // key named ssh-ed25519 was verified with SHA-1 under a policy that refuses it (found by a review).
          const named = !(key instanceof Error) && key.type === ctx.key.algo;
          if (!named || !accepted.includes(signatureAlgorithm(ctx))) {
            if (!ctx.signature) return ctx.reject(METHODS);
            await guest.refusePublicKey(req, 'weak-algorithm');
          }
          if (!ctx.signature || !ctx.blob) {
            // Only the client asking whether this key would do: not a login (see Guest.offerKey).
            await guest.offerKey(req, ctx.key.data);
            return ctx.accept();
          }
          // Signed at once with a key that is not the user's: the same question, its signature unread (see Guest.ownKey).
          await guest.ownKey(req, ctx.key.data);
          const signatureOk = !(key instanceof Error) && key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true;
          state.account = signatureOk ? await guest.publicKey(req, ctx.key.data) : await guest.refusePublicKey(req, 'bad-signature');
          return ctx.accept();
        }
        default:
          // "none" tells the client which methods exist; it is not an attempt.
          return ctx.reject(METHODS);
      }
    } catch (err) {
      if (err instanceof SluiceError) {
        // The shared layer's own answer that no login can be served now (its user store away; the gate logged
        // it): nothing the client did, and no failed login. The connection ends: retried within it, each
        // attempt logged an error with its stack, with no failure delay, as fast as the client sent them
        // (found by a review).
        // Unanswered: a refusal first would let the client's next attempt in before the end.
        client.end();
        return;
      }
      if (!(err instanceof AuthError)) {
        state.log.error({ err }, 'authentication failed unexpectedly');
        ctx.reject(METHODS);
        return;
      }
      if (err.reason === 'withdrawn') return;
      if (err.reason === 'session-limit') {
        state.log.warn({ user: ctx.username }, 'too many sessions (the user\'s limit, or its share per address)');
        // Said after the password or key was verified (the claim comes last), as FTP's 530 says it.
        endTelling(client, DISCONNECT.TOO_MANY_CONNECTIONS, 'Too many sessions; try again later');
        return;
      }
      if (guest.exhausted) {
        state.log.warn({ user: ctx.username.slice(0, 64) }, 'too many authentication failures');
        ctx.reject(METHODS);
        // OpenSSH's words, which its users know (an agent offering too many keys: IdentitiesOnly).
        endTelling(client, DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE, 'Too many authentication failures');
        return;
      }
      ctx.reject(METHODS);
    }
  }

  private limitsOf(client: ssh2.Connection, log: Logger): ChannelLimits {
    let limits = this.limits.get(client);
    if (!limits) {
      const { maxQueuedBytes, maxChannelsPerConnection } = this.services.config.sftp;
      const backlog = transportBacklog(client, log);
      limits = {
        channels: 0,
        budget: connectionBudget(backlog, maxQueuedBytes),
        backlog,
        windows: new WindowPool(maxQueuedBytes, channelWindow(maxQueuedBytes, maxChannelsPerConnection)),
      };
      this.limits.set(client, limits);
    }
    return limits;
  }

  private openSession(
    client: ssh2.Connection,
    state: ConnectionState,
    accept: () => ssh2.Session,
    reject: () => void,
    activity: () => void,
  ): void {
    const limits = this.limitsOf(client, state.log);
    // Each channel may hold handles and buffers: a connection gets a few, like OpenSSH's MaxSessions.
    if (limits.channels >= this.services.config.sftp.maxChannelsPerConnection) {
      // One a line, a review's client had 3,000 warn lines written in 0.2 s.
      refused(state, { channels: limits.channels }, 'session channel refused: too many on this connection');
      return reject();
    }
    const window = limits.windows.share;
    const session = acceptWithWindow(client, accept, window);
    if (!session) {
      state.log.error('cannot set the SSH window with this ssh2 version; connection closed');
      client.end();
      return;
    }
    const packet = clientMaxPacket(session);
    if (packet === null || packet < MIN_CLIENT_PACKET) {
      refused(state, { maxPacket: packet }, `session channel refused: the client takes packets below ${MIN_CLIENT_PACKET} bytes (or says nothing of them); connection closed`);
      client.end();
      return;
    }
    limits.channels++;
    const member = limits.windows.join();
    // The channel's own 'close' comes only once what the client sent on it has been read to the end (ssh2's
    // onCHANNEL_CLOSE), and a reader that reads on demand may never get there: the client's CHANNEL_CLOSE
    // (the session's 'close') or the connection's end says at once that nothing more can be sent.
    const closed = new AbortController();
    state.channels.add(closed);
    const gone = closed.signal;
    session.once('close', () => {
      limits.channels--;
      member.leave();
      state.channels.delete(closed);
      closed.abort();
    });
    const refuse = (what: string) => (_accept: unknown, reject?: () => void) => {
      // Refused as OpenSSH's empty AcceptEnv refuses them; but Debian's ssh_config sends LANG and LC_* with
      // every session, so an env request says nothing about the client and is not worth a warning.
      if (what === 'env') state.log.debug({ request: what }, 'session request refused');
      else refused(state, { request: what }, 'session request refused');
      reject?.();
    };
    for (const what of ['pty', 'x11', 'env', 'shell', 'auth-agent', 'signal', 'window-change'] as const) {
      session.on(what as 'shell', refuse(what) as never);
    }
    // A session channel runs one subsystem or command, once one was accepted. A second request on it found
    // ssh2's accept() returning nothing, and the TypeError that followed closed the client's connection
    // (found by a review). A refused request leaves the channel free for another.
    let started = false;
    const busy = (what: string, reject: () => void): boolean => {
      if (!started) return false;
      refused(state, { request: what }, 'session request refused: the channel runs one already');
      reject();
      return true;
    };
    const begin = <T>(accept: () => T): (() => T) => () => {
      started = true;
      return accept();
    };
    session.on('subsystem', (accept, reject, info) => {
      if (busy('subsystem', reject)) return;
      if (info.name !== 'sftp' || !state.account) {
        refused(state, { subsystem: info.name }, 'subsystem refused');
        return reject();
      }
      this.serveChannel(client, state, begin(accept), 'sftp', member, window, gone, (channel, s, reopen) => {
        // No 'data' listener until the channel loop exists: the client's INIT waits in the stream.
        const sftp = new SftpChannel(channel, s, state.log, {
          maxHandles: this.services.config.sftp.maxHandles,
          maxInFlight: 64,
          budget: limits.budget,
          onActivity: () => {
            activity();
            reopen();
          },
          symlinkTargetFirst: state.symlinkTargetFirst,
          exit: (status) => channel.exit(status),
          gone,
        });
        return { done: sftp.done, answered: () => sftp.answered() };
      });
    });
    session.on('exec', (accept, reject, info) => {
      if (busy('exec', reject)) return;
      const served = { scp: this.services.config.sftp.scp, hash: this.services.config.sftp.hashCommands };
      if (!state.account || !(served.scp || served.hash)) {
        refused(state, { command: info.command.slice(0, 200) }, 'exec refused');
        return reject();
      }
      let cmd: ExecCommand;
      try {
        cmd = parseExecCommand(info.command, served);
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        refused(state, { command: info.command.slice(0, 200), err: err.message }, 'exec refused');
        const channel = begin(accept)();
        if (err.program === 'scp') {
          // Its window is never re-opened: the client may send what it was granted, no more, while the reply waits for its close.
          // Under ssh2's, which re-opens as the stream is read, a client writing on for the 2 s sent 1.1-1.9 GB (found by a review).
          if (!this.ownWindow(client, state, channel, member, window)) return void channel.close();
          return scpRefused(channel, err.message);
        }
        // Told on stderr, as a shell or the program would; 127: no such command.
        channel.stderr.write(`${err.program ?? 'sluice'}: ${err.message}\n`);
        channel.exit(err.program === null ? 127 : 1);
        channel.end();
        return;
      }
      /** Runs the command, then closes its session (`close`) and ends the channel with the command's exit status. */
      const run = async (channel: ssh2.ServerChannel, close: () => Promise<void>, command: () => Promise<number>): Promise<void> => {
        const status = await command().catch((err: unknown) => {
          state.log.error({ err, command: cmd.kind }, 'exec failed');
          return 1;
        });
        await close();
        channel.exit(status);
        channel.end();
      };
      if (cmd.kind === 'hash') {
        const hash = cmd.hash;
        return this.serveChannel(client, state, begin(accept), 'sftp', member, window, gone, (channel, s) => {
          // A channel its client closes ends its session, whose end stops the checksum at its next piece:
          // otherwise a large file went on being read, at the hashing rate, for no one.
          let closing: Promise<void> | null = null;
          const close = () => (closing ??= s.close());
          channel.once('close', () => void close());
          // Its checksums keep the connection from idling (Session.hashing), and its end starts the idle timer again:
          // the client waited for it. Waiting for an empty input (rclone's probe) waits on the client: that is idle.
          const done = run(channel, close, () => runHashCommand(hash, s, { stdin: channel, stdout: channel, stderr: channel.stderr })).finally(activity);
          // Its lines are written as each file is hashed, and the rest of its answer is no reply owed at a stop: the drain
          // counts its session idle. Answered with its end (done), it held a stop beside a download on the same connection
          // until the drain's deadline, hashing a large file or waiting for a probe's input (found by a review).
          return { done, answered: aTurnLater };
        });
      }
      const scp = cmd.scp;
      this.serveChannel(client, state, begin(accept), 'scp', member, window, gone, (channel, s, reopen) => {
        const flow = {
          taken: () => {
            activity();
            reopen();
          },
          room: (stop: AbortSignal) => limits.backlog.within(this.services.config.sftp.maxQueuedBytes, stop),
        };
        const done = run(channel, () => s.close(), () => runScp(channel, gone, s, scp, state.log, flow));
        // scp acknowledges a file in the same turn of the event loop as its upload ends (sink.ts): a turn later the OK is on the channel.
        return { done, answered: aTurnLater };
      });
    });
  }

  /**
   * Accept a session channel for `protocol` on the account logged in, with
   * its SSH window under our control, open the account's session and hand
   * both to `serve`; the server's close() waits for its `done`. The server
   * ends the connection's sessions together (ServedChannels).
   */
  private serveChannel(
    client: ssh2.Connection,
    state: ConnectionState,
    accept: () => ssh2.ServerChannel,
    protocol: 'sftp' | 'scp',
    member: PoolMember,
    window: number,
    closed: AbortSignal,
    serve: (channel: ssh2.ServerChannel, session: Session, reopen: () => void) => { done: Promise<void>; answered(): Promise<void> },
  ): void {
    const account = state.account as Account;
    const channel = accept();
    const reopen = this.ownWindow(client, state, channel, member, window);
    if (!reopen) {
      state.log.error('cannot enforce the SSH window with this ssh2 version; channel closed');
      return void channel.close();
    }
    const where = { id: state.id, protocol, remoteAddress: state.ip, remotePort: state.port, source: state.guest.source, login: state.sessions.login ?? undefined } as const;
    // The account as stored now, read as the session opens: one changed since the login (a notice
    // not yet here) fails the session's open like a missing home, and its login gets its logout.
    const current = async (): Promise<Account> => {
      const now = await this.services.authenticator.refreshed(account, { protocol, remoteAddress: state.ip });
      if (!now) throw new SluiceError('permission-denied', undefined, 'account disabled, removed or expired since the login, its password changed or its key removed, or its rules refuse this connection now');
      return now;
    };
    const open = (): Promise<Session> => state.guest.enter(account.name, () => Session.open(account, where, this.services.sessionDeps, state.sessions, current));
    void open().then(
      (s) => {
        // The client closed the channel while its session opened, or the server ended it in the turn since it
        // opened (its connection's end did not know this channel yet): the session is closed at once, unserved.
        if (closed.aborted || s.ending) return void this.closeUnserved(s);
        const { done, answered } = serve(channel, s, reopen);
        state.sessions.add({ channel, answered, done, hashing: () => s.hashing });
        this.running.add(done);
        void done.finally(() => this.running.delete(done));
      },
      (err: unknown) => {
        // A refusal (a missing home, an account changed since the login) is no fault of the server's: the gate
        // has said why at warn. Only what the shared layer did not expect is an error.
        if (err instanceof SluiceError) state.log.info({ reason: err.detail ?? err.message }, 'session not opened; channel closed');
        else state.log.error({ err }, 'could not open session');
        // What an FTP client is told (a SluiceError's message is for clients; its detail is not).
        tellClient(channel, `session not opened: ${err instanceof SluiceError ? err.message : 'internal error'}`);
        channel.close();
        // The slot is freed and the login undone: another channel must not open a session without one.
        if (!state.guest.loggedIn) client.end();
      },
    );
  }

  /** ownWindow, a client that overruns the window disconnected. */
  private ownWindow(client: ssh2.Connection, state: ConnectionState, channel: ssh2.ServerChannel, member: PoolMember, window: number): (() => void) | null {
    return ownWindow(channel, client, member, window, () => {
      state.log.warn('peer ignored the channel window; disconnecting');
      client.end();
    });
  }

  private closeUnserved(session: Session): void {
    const done = session.close();
    this.running.add(done);
    void done.finally(() => this.running.delete(done));
  }

  /** New connections are refused (the port closes); live ones go on. */
  stopAccepting(): void {
    this.closing = true;
    this.listenerClosed ??= new Promise((resolve) => this.listener.close(resolve));
  }

  /** Stop accepting, then end live connections: close() only completes once they and their sessions are gone. */
  async close(): Promise<void> {
    this.stopAccepting();
    // A connection's own 'close' records its login's logout when its channels' sessions ended before it (SharedLogin),
    // and may come after the listener's: the listener's close is told a turn after the socket's end, the socket's after its handle closed.
    const gone = [...this.clients].map((client) => new Promise<void>((resolve) => client.once('close', () => resolve())));
    for (const { socket } of this.admitted.values()) socket.destroy();
    for (const client of this.clients) client.end();
    await this.listenerClosed;
    // Connections are gone, but their sessions may still be closing files and recording it.
    await Promise.all([...this.running, ...gone]);
  }
}
