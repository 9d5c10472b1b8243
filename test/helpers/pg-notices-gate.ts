import net from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that can hold back what the server
 * sends to the connection named `sluice notices`, and let it through one
 * protocol message at a time, or hold back what it sends every other
 * connection (the answers to the store's queries): the order in which a node
 * hears of commits against what it does meanwhile, which PostgreSQL alone
 * gives no way to set (a stopped server process sends everything it queued at
 * once).
 */
export class NoticesGate {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  /** The notices connection's client side, once its startup message named it. */
  private notices: net.Socket | null = null;
  private holding = false;
  /** What its server sent while held, not yet passed on. */
  private held = Buffer.alloc(0);
  /** What the server sent the other connections while their answers are held, per connection, not yet passed on. */
  private answers: Map<net.Socket, Buffer[]> | null = null;

  private constructor(
    private readonly pgPort: number,
    readonly port: number,
    server: net.Server,
  ) {
    this.server = server;
  }

  /** A gate on 127.0.0.1 in front of PostgreSQL listening on 127.0.0.1:`pgPort`. */
  static async start(pgPort: number): Promise<NoticesGate> {
    let gate: NoticesGate | null = null;
    const server = net.createServer((client) => gate?.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    gate = new NoticesGate(pgPort, (server.address() as net.AddressInfo).port, server);
    return gate;
  }

  /** `url` (postgres://…@127.0.0.1:PORT/…) through the gate. */
  through(url: string): string {
    return url.replace(`:${this.pgPort}/`, `:${this.port}/`);
  }

  /** From now on, what the server sends the notices connection waits here. */
  hold(): void {
    this.holding = true;
  }

  /**
   * Pass on what is held up to and including its first notification (`A`),
   * with any other message before it (a heartbeat's answer); false when no
   * whole notification is held. `drop`: that notification is not passed on,
   * as one that never came.
   */
  releaseNotice(drop = false): boolean {
    for (let at = 0; at + 5 <= this.held.length; ) {
      const end = at + 1 + this.held.readUInt32BE(at + 1);
      if (end > this.held.length) return false;
      if (this.held[at] === 0x41) {
        this.notices?.write(this.held.subarray(0, drop ? at : end));
        this.held = this.held.subarray(end);
        return true;
      }
      at = end;
    }
    return false;
  }

  /** How many whole notifications are held. */
  heldNotices(): number {
    let n = 0;
    for (let at = 0; at + 5 <= this.held.length; at += 1 + this.held.readUInt32BE(at + 1)) {
      if (at + 1 + this.held.readUInt32BE(at + 1) <= this.held.length && this.held[at] === 0x41) n++;
    }
    return n;
  }

  /** Pass on everything held, and hold nothing more. */
  releaseAll(): void {
    this.holding = false;
    if (this.held.length > 0) this.notices?.write(this.held);
    this.held = Buffer.alloc(0);
  }

  /** From now on, what the server sends every connection but the notices one waits here. */
  holdAnswers(): void {
    this.answers ??= new Map();
  }

  /** Pass on every answer held, in order, and hold none more. */
  releaseAnswers(): void {
    const answers = this.answers;
    this.answers = null;
    for (const [client, chunks] of answers ?? []) for (const chunk of chunks) client.write(chunk);
  }

  /** Pass on the answers held for the connection whose first held answer came last; the others stay held. */
  releaseLastAnswers(): void {
    const last = [...this.answers?.keys() ?? []].at(-1);
    if (!last || !this.answers) return;
    for (const chunk of this.answers.get(last) ?? []) last.write(chunk);
    this.answers.delete(last);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.pgPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    let first = true;
    client.on('data', (chunk: Buffer) => {
      // The startup message (no SSL asked in tests) carries application_name in the clear.
      if (first && chunk.includes('sluice notices')) this.notices = client;
      first = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (client === this.notices && this.holding) this.held = Buffer.concat([this.held, chunk]);
      else if (client !== this.notices && this.answers) this.answers.set(client, [...this.answers.get(client) ?? [], chunk]);
      else client.write(chunk);
    });
  }
}
