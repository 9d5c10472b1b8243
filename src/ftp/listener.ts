import net from 'node:net';
import type { Services } from '../app.js';
import { certificateEnding } from '../certs/expiry.js';
import { certificateFingerprint } from '../certs/fingerprints.js';
import { TLS_CERT } from '../certs/names.js';
import { readTlsMaterial, type TlsMaterial } from '../certs/tls-material.js';
import { listenOn, type Listening } from '../listening.js';
import { COMMANDS } from './commands/table.js';
import { FtpConnection } from './connection.js';
import type { FtpContext } from './control.js';
import { formatReply, Code } from './replies.js';
import { TlsEngine } from './tls.js';

/** The FTP front-end: plain/explicit port and implicit TLS port, one TLS engine. */
export class FtpFrontEnd {
  readonly name = 'ftp';
  private readonly servers: net.Server[] = [];
  readonly listeners: Listening[] = [];
  private readonly connections = new Set<FtpConnection>();
  private closing = false;
  /** Settles once every listener is closed and its connections are gone. */
  private listenersClosed: Promise<unknown> | null = null;
  private readonly ctx: FtpContext;

  private constructor(
    private readonly services: Services,
    material: TlsMaterial,
  ) {
    this.ctx = {
      config: services.config.ftp,
      tls: new TlsEngine(material, services.config.ftp.tlsMaxVersion),
      dataPlace: (source, user) => services.coordinator.dataPlace(source, user),
      closingData: { count: 0 },
      authenticator: services.authenticator,
      sessionDeps: services.sessionDeps,
      log: services.log.child({ frontEnd: 'ftp' }),
    };
  }

  /** Null when both FTP ports are 0. */
  static async start(services: Services): Promise<FtpFrontEnd | null> {
    const { port, implicitTlsPort } = services.config.ftp;
    if (port === 0 && implicitTlsPort === 0) return null;
    const fe = new FtpFrontEnd(services, await readTlsMaterial(services.config.certsDir));
    try {
      if (port !== 0) await fe.listen(port, false);
      if (implicitTlsPort !== 0) await fe.listen(implicitTlsPort, true);
    } catch (err) {
      // The caller only closes front-ends that started: a port already bound would keep the process alive.
      await fe.close();
      throw err;
    }
    return fe;
  }

  /**
   * SIGHUP: new certificate for new handshakes; live sessions keep theirs.
   * A certificate that cannot be read, or does not go with the key, leaves
   * the old one in use (readTlsMaterial).
   */
  reload(): void {
    readTlsMaterial(this.services.config.certsDir)
      .then((material) => {
        const fingerprint = certificateFingerprint(material.cert);
        this.ctx.tls.reload(material);
        this.ctx.log.info({ fingerprint }, `TLS certificate reloaded: ${fingerprint}`);
        const ending = certificateEnding(material.cert);
        // Worded as at start, not as the reload line: whoever counts those counts reloads.
        if (ending) this.ctx.log.warn(`TLS certificate ${TLS_CERT}: ${ending}`);
      })
      .catch((err: unknown) => this.ctx.log.error({ err }, 'TLS certificate reload failed; the old one stays in use'));
  }

  private async listen(port: number, implicit: boolean): Promise<void> {
    const server = net.createServer({ pauseOnConnect: false }, (socket) => void this.accept(socket, implicit));
    await listenOn(server, implicit ? 'implicit FTPS' : 'FTP', { host: this.services.config.bind, port });
    // After the listen: its refusal is the start's failure, said once.
    server.on('error', (err) => this.ctx.log.error({ err }, 'listener error'));
    const address = server.address() as net.AddressInfo;
    this.listeners.push({ protocol: implicit ? 'ftps' : 'ftp', address: address.address, port: address.port });
    this.servers.push(server);
  }

  private async accept(socket: net.Socket, implicit: boolean): Promise<void> {
    socket.on('error', () => undefined);
    // Implicit TLS clients expect a handshake, not text: they are just closed.
    const busy = implicit ? undefined : formatReply(Code.ServiceUnavailable, ['Too many connections; try again later.']);
    const guest = await this.services.gate.admit(socket, implicit ? 'ftps' : 'ftp', busy);
    if (!guest) return;
    // Admitted while the front-end was closing: nothing would end this connection.
    if (this.closing) return void socket.destroy();
    socket.setNoDelay(true);
    const conn = new FtpConnection(socket, this.ctx, COMMANDS, implicit, guest, () => this.connections.delete(conn));
    this.connections.add(conn);
    void conn.start();
  }

  /** New connections are refused (the ports close); live ones go on. */
  stopAccepting(): void {
    this.closing = true;
    this.listenersClosed ??= Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }

  /** Stop accepting, then end live connections: a server's close() completes only once they are gone. */
  async close(): Promise<void> {
    this.stopAccepting();
    await Promise.all([...this.connections].map((c) => c.closeAfterReply(Code.ServiceUnavailable, 'Server shutting down.')));
    await this.listenersClosed;
  }
}
