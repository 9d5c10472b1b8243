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
        socket.on('error', () => undefined);
        socket.pause();
        resolve(socket);
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
    });
  }

  close(): void {
    this.socket?.destroy();
  }
}
