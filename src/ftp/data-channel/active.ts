import net, { type Socket } from 'node:net';

/** PORT/EPRT: the server connects out when the transfer starts. */
export class ActiveEndpoint {
  private socket: Socket | null = null;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly localAddress: string,
    private readonly timeoutMs: number,
  ) {}

  connect(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.host, port: this.port, localAddress: this.localAddress });
      this.socket = socket;
      const timer = setTimeout(() => socket.destroy(new Error('data connection timed out')), this.timeoutMs);
      timer.unref();
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.setNoDelay(true);
        socket.off('error', onError);
        socket.off('close', onClose);
        socket.on('error', () => undefined);
        socket.pause();
        resolve(socket);
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      // Closed before it was made (ABOR, the control connection's end: close() destroys it without an
      // error): nothing else would settle this, and the transfer, its ABOR and its session waited for good.
      const onClose = () => onError(new Error('data channel closed'));
      socket.once('error', onError);
      socket.once('close', onClose);
    });
  }

  close(): void {
    this.socket?.destroy();
  }
}
