import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { TlsEngine } from '../tls.js';
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
  tls: TlsEngine | null;
  requireReuse: boolean;
  handshakeTimeoutMs: number;
}

/**
 * The connected data stream: raw TCP under PROT C, TLS under PROT P; `announce`
 * sends the 150 reply at the right moment. Most clients start TLS on the data
 * connection only after 150. Some (curl) start it as soon as the connection is
 * up: for those the handshake is finished first, so the fresh session ticket of
 * this data connection reaches the client before 150 and it can resume the next
 * data connection with it. With reuse required, a TLS data connection must
 * resume a session of this engine; with the peer address check, a stranger
 * cannot take the transfer.
 */
export async function openDataStream(endpoint: DataEndpoint, security: DataSecurity, announce: () => void): Promise<Duplex> {
  if (endpoint instanceof PassiveEndpoint && endpoint.tlsReady !== (security.tls !== null)) {
    throw new DataChannelError('tls', 'PROT changed after PASV');
  }
  if (security.tls && endpoint instanceof PassiveEndpoint && endpoint.tlsReady) {
    // One turn of the event loop reads a ClientHello already waiting in the kernel.
    await new Promise((resolve) => setImmediate(resolve));
    const early = endpoint.tlsStarted;
    if (!early) announce();
    const secure = await withTimeout(endpoint.secureConnection(), security.handshakeTimeoutMs);
    checkReuse(secure, security);
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
    secure = await security.tls.accept(raw, security.handshakeTimeoutMs);
  } catch (err) {
    raw.destroy();
    throw new DataChannelError('tls', String(err));
  }
  checkReuse(secure, security);
  return secure;
}

function checkReuse(secure: TLSSocket, security: DataSecurity): void {
  secure.on('error', () => undefined);
  if (security.requireReuse && !secure.isSessionReused()) {
    secure.destroy();
    throw new DataChannelError('no-reuse', 'data connection did not resume the control TLS session');
  }
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
    throw new DataChannelError(/timed out/.test(String(err)) ? 'timeout' : 'tls', String(err));
  } finally {
    clearTimeout(timer);
  }
}
