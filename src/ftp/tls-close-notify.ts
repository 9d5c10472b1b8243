import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';

/**
 * A TLS data connection whose TCP ended before the client's close_notify. In
 * FTP's stream mode the end of the connection is the end of the file, so an
 * upload cut short (a client killed mid-file, or a FIN forged on the path)
 * would otherwise be stored as complete over the good file: close_notify is
 * the only proof that the client sent it all (vsftpd's strict_ssl_read_eof).
 */
export class NoCloseNotifyError extends Error {
  readonly code = 'ERR_TLS_NO_CLOSE_NOTIFY';

  constructor() {
    super('data connection ended without TLS close_notify');
    this.name = 'NoCloseNotifyError';
  }
}

/**
 * The TCP connection under an upload's TLS, handed to Node's TLS as a JS
 * stream. Over a socket, Node reads the TCP in native code and reports the
 * client's close_notify and a bare FIN alike, as one `end`. Through this
 * stream the FIN is seen here first, after every byte before it has gone
 * through TLS: if TLS has not ended by then, no close_notify came, and the
 * TLS socket is failed with NoCloseNotifyError before the FIN can end it.
 *
 * It costs about a third more CPU per MiB received than TLS over the socket
 * (every chunk crosses into JavaScript once more), and far more for what is
 * sent, so downloads and listings, which do not need it, never use it.
 */
export class TcpUnderTls extends Duplex {
  private secure: TLSSocket | null = null;

  constructor(private readonly tcp: Socket) {
    // Half-open, as TLS needs: the client's FIN must not end our side before our close_notify has gone.
    super({ allowHalfOpen: true });
    tcp.allowHalfOpen = true;
    // Bytes a 'readable' listener drew from the socket before it came here (read() emits them as
    // 'data' too, so this comes before the listener).
    for (let chunk: Buffer | null; (chunk = tcp.read() as Buffer | null) !== null; ) this.push(chunk);
    tcp.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) tcp.pause();
    });
    tcp.on('end', () => this.push(null));
    tcp.on('error', (err) => this.destroy(err));
    tcp.on('close', () => this.destroy());
    // Registered before TLS registers its own: by this stream's end every byte it read has reached TLS.
    this.once('end', () => {
      if (this.secure && !tlsEnded(this.secure)) this.secure.destroy(new NoCloseNotifyError());
    });
  }

  /** The TLS socket made over this stream: the one to fail if the client's FIN comes first. */
  guard(secure: TLSSocket): void {
    this.secure = secure;
  }

  override _read(): void {
    this.tcp.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.tcp.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.tcp.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.tcp.destroy();
    done(err);
  }
}

/**
 * Whether TLS has taken the end of its input: the client's close_notify
 * makes Node's TLS push the end at once, while `readableEnded` waits for the
 * reader to catch up, which a slow disk can hold back past the FIN.
 */
function tlsEnded(secure: TLSSocket): boolean {
  return (secure as unknown as { _readableState: { ended: boolean } })._readableState.ended;
}
