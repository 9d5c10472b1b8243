import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ResumptionRequiredError, type TlsBinding } from '../tls.js';
import type { ActiveEndpoint } from './active.js';
import { PassiveEndpoint } from './passive.js';

export type DataEndpoint = PassiveEndpoint | ActiveEndpoint;

/** Why no data connection could be made; the connection answers 425 with a fixed text. */
export class DataChannelError extends Error {
  constructor(
    readonly reason: 'timeout' | 'connect' | 'tls' | 'no-reuse',
    detail: string,
  ) {
    super(detail);
    this.name = 'DataChannelError';
  }
}

export interface DataSecurity {
  /** The control connection's TLS binding under PROT P, null under PROT C. */
  tls: TlsBinding | null;
  requireReuse: boolean;
  /** An upload's TLS must end with the client's close_notify (see NoCloseNotifyError). */
  needCloseNotify: boolean;
  handshakeTimeoutMs: number;
}

/**
 * The connected data stream: raw TCP under PROT C, TLS under PROT P; `announce`
 * sends the 150 reply at the right moment. Most clients start TLS on the data
 * connection only after 150. Some (curl) start it as soon as the connection is
 * up: for those the handshake is finished first, so the fresh session ticket of
 * this data connection reaches the client before 150 and it can resume the next
 * data connection with it. With reuse required, a TLS data connection must
 * resume a session of its own control connection (TlsBinding): another client
 * from the same address cannot take the transfer, and a stranger is stopped
 * by the peer address check already.
 *
 * Whether the handshake hands out a fresh session ticket (DataTlsUse.tickets):
 * under PASV, an upload whose client waited for 150 before its handshake
 * (rclone, lftp, Python's ftplib) gets none: each resumes the control
 * connection's session again. A ticket is bytes on the connection the client
 * must read: an upload's client may only send, and one it leaves unread
 * turns its close into a reset that cuts the upload (rclone). Downloads and
 * listings, which the client reads to their end, get one: PHP's ftp
 * extension (OpenSSL with a session cache) uses each TLS 1.3 session once,
 * and with none on a download or a listing its next transfer offered nothing
 * to resume and was refused. One that began TLS before 150 (curl, basic-ftp)
 * gets it on uploads too: curl uses each session once, and its TLS close
 * reads what has come first; once seen so, a client keeps getting it
 * (TlsBinding.startsDataTlsEarly). Under PORT the server connects after 150
 * and cannot tell them apart: tickets, as for curl (rclone has no active
 * mode). proftpd issues no ticket on any data connection (its issue #959),
 * which leaves curl nothing to resume its next one with.
 */
export async function openDataStream(endpoint: DataEndpoint, security: DataSecurity, upload: boolean, announce: () => void): Promise<Duplex> {
  if (endpoint instanceof PassiveEndpoint && endpoint.tlsReady !== (security.tls !== null)) {
    throw new DataChannelError('tls', 'PROT changed after PASV');
  }
  const needCloseNotify = upload && security.needCloseNotify;
  if (security.tls && endpoint instanceof PassiveEndpoint && endpoint.tlsReady) {
    // One turn of the event loop reads a ClientHello already waiting in the kernel.
    await new Promise((resolve) => setImmediate(resolve));
    const early = endpoint.clientSpoke;
    if (!early) announce();
    const tickets = security.tls.startsDataTlsEarly(early) || !upload;
    const secure = await withTimeout(endpoint.secureConnection({ needCloseNotify, tickets }), security.handshakeTimeoutMs);
    secure.on('error', () => undefined);
    if (early) {
      // Let the session ticket written at the end of the handshake leave first.
      await new Promise((resolve) => setImmediate(resolve));
      announce();
    }
    return secure;
  }
  announce();
  let raw;
  try {
    raw = await endpoint.connect();
  } catch (err) {
    throw new DataChannelError(/timed out/.test(String(err)) ? 'timeout' : 'connect', String(err));
  }
  // Left paused: the transfer's pipeline resumes it once a consumer is attached.
  if (!security.tls) return raw;
  let secure;
  try {
    secure = await security.tls.acceptData(raw, security.handshakeTimeoutMs, security.requireReuse, { needCloseNotify, tickets: true });
  } catch (err) {
    raw.destroy();
    throw handshakeFailure(err);
  }
  secure.on('error', () => undefined);
  return secure;
}

function handshakeFailure(err: unknown): DataChannelError {
  if (err instanceof ResumptionRequiredError) return new DataChannelError('no-reuse', err.message);
  return new DataChannelError(/timed out/.test(String(err)) ? 'timeout' : 'tls', String(err));
}

async function withTimeout(p: Promise<TLSSocket>, ms: number): Promise<TLSSocket> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('data connection timed out')), ms);
      }),
    ]);
  } catch (err) {
    throw handshakeFailure(err);
  } finally {
    clearTimeout(timer);
  }
}
