import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { TLS_CERT, TLS_KEY } from '../certs/ensure.js';

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

const SESSION_CACHE_MAX = 4096;

/**
 * One TLS engine for every socket of the FTP front-end: implicit control
 * connections, AUTH TLS upgrades and data connections. Node resumes a session
 * only within one context (ticket keys) and one session store (session IDs,
 * TLS 1.2), so all of them share this one; a data connection can then prove
 * it belongs to the control connection by resuming its session.
 */
export class TlsEngine {
  private context: tls.SecureContext;
  /** Holds the session-ID callbacks; it never listens. */
  private readonly sessions = new tls.Server();
  private readonly cache = new Map<string, Buffer>();
  private readonly ticketKeys = randomBytes(48);

  constructor(private readonly certsDir: string) {
    this.context = this.load();
    this.sessions.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      if (this.cache.size >= SESSION_CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(id.toString('hex'), data);
      done();
    });
    this.sessions.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      done(null, this.cache.get(id.toString('hex')) ?? null);
    });
  }

  /** Re-read certificate and key (SIGHUP); open sessions keep theirs, tickets stay valid. */
  reload(): void {
    this.context = this.load();
  }

  /** Start the server side of TLS on `socket`; resolves once the handshake is done. */
  accept(socket: Socket, handshakeTimeoutMs: number): Promise<tls.TLSSocket> {
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      server: this.sessions,
      secureContext: this.context,
      ALPNProtocols: ['ftp'],
      requestCert: false,
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('TLS handshake timed out')), handshakeTimeoutMs);
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

  private load(): tls.SecureContext {
    const context = tls.createSecureContext({
      key: readFileSync(join(this.certsDir, TLS_KEY)),
      cert: readFileSync(join(this.certsDir, TLS_CERT)),
      minVersion: 'TLSv1.2',
      ciphers: CIPHERS,
      honorCipherOrder: true,
      ticketKeys: this.ticketKeys,
      sessionIdContext: 'sluice-ftp',
      sessionTimeout: 3600,
    });
    renewTicketsOnResumption(context, this.ticketKeys);
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
 * ticket-key hook and answer 2 ("valid, renew") for every ticket we issued.
 * Where the hook is missing, Node's default tickets stay in use.
 */
function renewTicketsOnResumption(context: tls.SecureContext, keys: Buffer): void {
  const native = (context as unknown as { context: NativeContext }).context;
  if (typeof native.enableTicketKeyCallback !== 'function') return;
  const name = keys.subarray(0, 16);
  const hmacKey = keys.subarray(16, 32);
  const aesKey = keys.subarray(32, 48);
  native.onticketkeycallback = (ticketName, _iv, encrypt) => {
    if (encrypt) return [1, hmacKey, aesKey, name, randomBytes(16)];
    return [ticketName.equals(name) ? 2 : 0, hmacKey, aesKey];
  };
  native.enableTicketKeyCallback();
}
