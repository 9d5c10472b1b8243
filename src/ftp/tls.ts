import { constants, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Server, Socket } from 'node:net';
import tls from 'node:tls';
import type { TlsMaterial } from '../certs/tls-material.js';
import { TcpUnderTls } from './tls-close-notify.js';

/** TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all AEAD. */
const CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

/**
 * Renegotiation (TLS 1.2) is refused outright, client- or server-initiated:
 * nothing in FTP needs it, and Node would otherwise let a client renegotiate
 * three times every ten minutes on every socket, a cheap CPU drain (testssl.sh
 * rates it VULNERABLE).
 */
const SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION;

/** OpenSSL's answers when a resume-only context meets a full handshake (no certificate to offer). */
const FULL_HANDSHAKE_REFUSED = new Set(['ERR_SSL_NO_SHARED_CIPHER', 'ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM']);

/** A data connection tried a full TLS handshake where it had to resume the control connection's session. */
export class ResumptionRequiredError extends Error {
  constructor() {
    super('data connection did not resume the control TLS session');
    this.name = 'ResumptionRequiredError';
  }
}

/** What the transfer command made of a data connection, for its TLS. */
export interface DataTlsUse {
  /** An upload's: the socket fails with NoCloseNotifyError if the client's TCP ends before its TLS does. */
  needCloseNotify: boolean;
  /**
   * Whether the handshake hands the client a fresh session ticket. Under TLS
   * 1.3 the ticket is a message of the server's after the handshake, bytes on
   * the connection the client must read: a client that only sends (an
   * upload) and closes without reading (Go's crypto/tls: rclone) has them
   * unread in its socket, and its kernel answers the close with a reset
   * instead of a FIN, dropping whatever of the file and its close_notify it
   * had not sent yet (426 for want of close_notify; vsftpd with reuse not
   * required keeps the cut file). See openDataStream for who gets one.
   */
  tickets: boolean;
}

/**
 * The FTP front-end's certificate. Each control connection gets a TlsBinding
 * of its own from it: no session, ticket or ticket key is shared between two
 * control connections.
 */
export class TlsEngine {
  constructor(
    private material: TlsMaterial,
    /** ftp.tlsMaxVersion. */
    private readonly maxVersion: tls.SecureVersion,
  ) {}

  /** New certificate and key (SIGHUP): control handshakes from now on get them; established TLS keeps its own. */
  reload(material: TlsMaterial): void {
    this.material = material;
  }

  /** Every TLS socket of one control connection goes through the binding this returns. */
  bind(): TlsBinding {
    return new TlsBinding(() => this.material, this.maxVersion);
  }
}

/**
 * The TLS of one control connection and of its data connections: a data
 * connection proves it comes from the control connection's client by
 * resuming that client's session, so resumption has to be possible from this
 * control connection's sessions and from nobody else's.
 *
 * - Ticket key and session-ID context are drawn per binding, and TLS 1.2
 *   session IDs are kept per binding: a session or ticket of another control
 *   connection (another client behind the same NAT, who did only AUTH TLS)
 *   is unknown here and resumes nothing.
 * - Data connections use a context without certificate: a full handshake
 *   cannot complete there, only a resumption can. So no session ever starts
 *   on a data port, and whoever connects to it first cannot obtain a ticket
 *   of this binding to use on the next one. Every resumable session of the
 *   binding descends from the control connection's own handshake.
 *
 * Node resumes only within one context's ticket keys and one session store:
 * the control and data contexts share this binding's keys, session-ID
 * context and store.
 */
export class TlsBinding {
  private readonly ticketKeys = randomBytes(48);
  private readonly sessionIdContext = randomBytes(16).toString('hex');
  /** Node asks its `server` option for session-ID storage; only emit/listenerCount are used. */
  private readonly sessions = new EventEmitter();
  /** The TLS 1.2 session-ID session of the last full handshake: with reuse required, the control connection's. */
  private session: { id: string; data: Buffer } | null = null;
  /** Made on first use, keyed by context(): with or without certificate, issuing tickets or not. */
  private readonly contexts = new Map<string, tls.SecureContext>();
  /**
   * The certificate of every context of this binding that has one, read once, by the first that needs
   * it: read by each context as it is made, a reload (SIGHUP) after the control handshake gave an
   * upload's data connection without tickets, made later, the new certificate beside the control
   * connection's old one, where reuse is not required and the client does a full handshake (a client
   * that compares the two, FileZilla, refuses that).
   */
  private certificate: TlsMaterial | null = null;
  /** This control connection's client has started a data connection's TLS before 150 (see startsDataTlsEarly). */
  private earlyDataClient = false;
  /** The TLS version of the control connection, the binding's first handshake (see ticketsOnOurTerms). */
  private controlProtocol: string | null = null;

  /** `material` is read at the control handshake, so a connection made before a reload still gets the new certificate. */
  constructor(
    private readonly material: () => TlsMaterial,
    private readonly maxVersion: tls.SecureVersion,
  ) {
    this.sessions.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      this.session = { id: id.toString('hex'), data };
      done();
    });
    this.sessions.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      done(null, this.session?.id === id.toString('hex') ? this.session.data : null);
    });
  }

  /**
   * Server side of TLS with the certificate: the control connection's
   * handshake. Resolves a turn of the event loop after it completes: Node
   * reports it done before OpenSSL has written the TLS 1.3 session tickets, so
   * a reply written at once (implicit FTPS's 220) went out ahead of them. A
   * GnuTLS client (wget --ftps-implicit) looks for a ticket only in the record
   * right after the handshake, found the 220 there, kept no session, and every
   * data connection, which must resume one, was refused. vsftpd's tickets come
   * first. `tickets` is false only for a data connection that is to get none
   * (DataTlsUse).
   */
  async accept(socket: Socket | TcpUnderTls, handshakeTimeoutMs: number, tickets = true): Promise<tls.TLSSocket> {
    const secure = await this.handshake(socket, this.context(true, tickets), handshakeTimeoutMs);
    this.controlProtocol ??= secure.getProtocol();
    // A close meanwhile is the caller's to see (secure.destroyed): the handshake itself succeeded.
    await new Promise((resolve) => setImmediate(resolve));
    return secure;
  }

  /**
   * Whether this control connection's client starts a data connection's TLS
   * before 150, from what this one showed (`early`) and what earlier ones
   * did: once seen early (curl), always. Its ClientHello may come after its
   * STOR on a real network (the packet lost and sent again), and curl, given
   * no ticket then, offers nothing to resume on its next data connection,
   * which is refused.
   */
  startsDataTlsEarly(early: boolean): boolean {
    this.earlyDataClient ||= early;
    return this.earlyDataClient;
  }

  /**
   * Server side of TLS on a data connection. With `mustResume` only a
   * resumption of this binding's sessions completes; anything else fails with
   * ResumptionRequiredError. Without it, any client may do a full handshake.
   * `use` is what the transfer command made of the connection (DataTlsUse).
   */
  async acceptData(socket: Socket, handshakeTimeoutMs: number, mustResume: boolean, use: DataTlsUse): Promise<tls.TLSSocket> {
    const tcp = use.needCloseNotify ? new TcpUnderTls(socket) : socket;
    if (!mustResume) return this.accept(tcp, handshakeTimeoutMs, use.tickets);
    let secure;
    try {
      secure = await this.handshake(tcp, this.context(false, use.tickets), handshakeTimeoutMs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw code !== undefined && FULL_HANDSHAKE_REFUSED.has(code) ? new ResumptionRequiredError() : err;
    }
    // A full handshake cannot complete without a certificate; should a suite ever need none, this still refuses it.
    if (!secure.isSessionReused()) {
      secure.destroy();
      throw new ResumptionRequiredError();
    }
    // As accept(): the session ticket goes before the first byte of the transfer. Written in the same turn,
    // a single file's listing and its close_notify went ahead of it, and Python's ftplib from 3.10 on failed
    // its TLS close ('shutdown while in init') on single-file NLST and LIST.
    await new Promise((resolve) => setImmediate(resolve));
    return secure;
  }

  private handshake(socket: Socket | TcpUnderTls, secureContext: tls.SecureContext, timeoutMs: number): Promise<tls.TLSSocket> {
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      server: this.sessions as unknown as Server,
      secureContext,
      ALPNProtocols: ['ftp'],
      requestCert: false,
    });
    if (socket instanceof TcpUnderTls) socket.guard(secure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('TLS handshake timed out')), timeoutMs);
      timer.unref();
      const onClose = () => fail(new Error('closed during TLS handshake'));
      const fail = (err: Error) => {
        clearTimeout(timer);
        secure.destroy();
        reject(err);
      };
      secure.once('secure', () => {
        clearTimeout(timer);
        secure.off('error', fail);
        secure.off('close', onClose);
        resolve(secure);
      });
      secure.once('error', fail);
      secure.once('close', onClose);
    });
  }

  /**
   * The context with the certificate (the control connection's handshake, or
   * a data connection's without reuse required) or without (resumption
   * only), handing out session tickets or not (see DataTlsUse.tickets). Made
   * once per binding and kind: the certificate is read when the first
   * handshake that needs it comes.
   */
  private context(withCertificate: boolean, tickets: boolean): tls.SecureContext {
    const kind = `${withCertificate ? 'certificate' : 'resume-only'}, ${tickets ? 'tickets' : 'no tickets'}`;
    let context = this.contexts.get(kind);
    if (!context) {
      context = tls.createSecureContext({
        ...(withCertificate ? (this.certificate ??= this.material()) : {}),
        minVersion: 'TLSv1.2',
        maxVersion: this.maxVersion,
        ciphers: CIPHERS,
        honorCipherOrder: true,
        secureOptions: SECURE_OPTIONS,
        ticketKeys: this.ticketKeys,
        sessionIdContext: this.sessionIdContext,
        sessionTimeout: 3600,
      });
      ticketsOnOurTerms(context, this.ticketKeys, tickets, () => this.controlProtocol === 'TLSv1.3');
      this.contexts.set(kind, context);
    }
    return context;
  }
}

/** The native side of a SecureContext, where Node keeps its ticket-key hook. */
interface NativeContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => (number | Buffer)[];
}

/**
 * OpenSSL clients that keep a session cache (curl does) use a TLS 1.3 ticket
 * once and then drop it. A resumed data connection therefore has to hand out
 * a fresh ticket, or the client has nothing to resume the next data connection
 * with and it is refused (vsftpd loses 7-19 of 50 uploads exactly this way).
 * Node's built-in ticket handling never renews, so we install Node's own
 * ticket-key hook and answer 2 ("valid, renew") for every ticket we issued,
 * when the control connection speaks TLS 1.3 (`renew`). A TLS 1.2 ticket
 * serves any number of resumptions, and a renewed one is harmful there: an
 * OpenSSL client with a session cache (PHP's ftp extension, Perl's
 * IO::Socket::SSL under Net::FTP) drops the session it resumed when the new
 * ticket comes and, the handshake being a resumption, never stores the new
 * one, so its next data connection offered nothing and was refused.
 *
 * Without `issue` the hook accepts our tickets (1, "valid", no renewal) and
 * issues none (0 when asked to encrypt one: OpenSSL 3 then sends no TLS 1.3
 * NewSessionTicket at all, and an empty one in TLS 1.2, which means none).
 * Where the hook is missing, Node's default tickets stay in use.
 */
function ticketsOnOurTerms(context: tls.SecureContext, keys: Buffer, issue: boolean, renew: () => boolean): void {
  const native = (context as unknown as { context: NativeContext }).context;
  if (typeof native.enableTicketKeyCallback !== 'function') return;
  const name = keys.subarray(0, 16);
  const hmacKey = keys.subarray(16, 32);
  const aesKey = keys.subarray(32, 48);
  native.onticketkeycallback = (ticketName, _iv, encrypt) => {
    if (encrypt) return [issue ? 1 : 0, hmacKey, aesKey, name, randomBytes(16)];
    if (!ticketName.equals(name)) return [0, hmacKey, aesKey];
    return [issue && renew() ? 2 : 1, hmacKey, aesKey];
  };
  native.enableTicketKeyCallback();
}
