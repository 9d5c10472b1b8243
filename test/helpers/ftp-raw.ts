import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  code: number;
  lines: string[];
  text: string;
}

/** A bare FTP control connection: write lines, read whole (multi-line) replies. */
export class RawFtp {
  private buf = '';
  private readonly replies: Reply[] = [];
  private waiting: ((r: Reply | null) => void) | null = null;
  private pending: string[] = [];
  closed = false;
  session: Buffer | undefined;
  /**
   * The server name the control connection's TLS was made for. Node 22 files a client session under
   * it (servername, else host, else 'localhost') and offers it only to a connection made for the same
   * name, so each data connection names it again, or it does a full handshake the server refuses.
   */
  private identity: Pick<tls.ConnectionOptions, 'host' | 'servername'> = {};

  private constructor(public socket: net.Socket) {
    this.attach(socket);
  }

  /** What a client from `from` gets on connecting: the greeting's code, or 'closed' when refused before it. */
  static async greeting(port: number, from: string): Promise<number | 'closed'> {
    const c = await RawFtp.connect(port, false, from).catch(() => null);
    if (!c) return 'closed';
    const r = await c.read(5000).catch(() => null);
    c.close();
    return r?.code ?? 'closed';
  }

  /** `localAddress`: another loopback address (127.0.0.2...) to connect from, as a second client would. */
  static async connect(port: number, implicit = false, localAddress?: string): Promise<RawFtp> {
    const where: net.TcpNetConnectOpts = { port, host: '127.0.0.1', localAddress };
    // tls.connect hands its options on to net.connect, localAddress too (its type leaves that out).
    const socket = implicit ? tls.connect({ ...where, rejectUnauthorized: false }) : net.connect(where);
    // Under TLS 1.2 the session comes during the handshake, before secureConnect: listen from the start.
    let session: Buffer | undefined;
    if (implicit) (socket as tls.TLSSocket).on('session', (s: Buffer) => (session = s));
    await new Promise((r, j) => {
      socket.once(implicit ? 'secureConnect' : 'connect', r);
      socket.once('error', j);
    });
    const c = new RawFtp(socket);
    if (implicit) {
      c.identity = { host: where.host };
      c.session = session;
      (socket as tls.TLSSocket).on('session', (s: Buffer) => (c.session = s));
    }
    return c;
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => this.feed(d.toString('utf8')));
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.(null);
      this.waiting = null;
    });
    socket.on('error', () => undefined);
  }

  private feed(text: string): void {
    this.buf += text;
    let i;
    while ((i = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      this.pending.push(line);
      const first = this.pending[0] as string;
      const code = first.slice(0, 3);
      const done = this.pending.length === 1 ? /^\d{3}( |$)/.test(first) : line.startsWith(code + ' ');
      if (done) {
        const lines = this.pending;
        this.pending = [];
        const reply = { code: Number(code), lines, text: lines.join('\n') };
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = null;
          w(reply);
        } else this.replies.push(reply);
      }
    }
  }

  /** Next reply, or null when the server closed the connection. */
  read(timeoutMs = 10_000): Promise<Reply | null> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reply in time')), timeoutMs);
      this.waiting = (r) => {
        clearTimeout(t);
        resolve(r);
      };
    });
  }

  send(raw: string | Buffer): void {
    this.socket.write(raw);
  }

  /** `line` sent, its reply read (a slow one, such as a PASS verified with costly parameters, given longer than read()'s default). */
  async cmd(line: string, timeoutMs?: number): Promise<Reply> {
    this.send(line + '\r\n');
    const r = await this.read(timeoutMs);
    if (!r) throw new Error(`connection closed after ${line}`);
    return r;
  }

  /** Greeting, AUTH TLS, login, PBSZ 0, PROT P: a client ready for protected transfers. */
  static async secureLogin(
    port: number,
    user: string,
    password: string,
    { localAddress, ...tlsOptions }: tls.ConnectionOptions & { localAddress?: string } = {},
  ): Promise<RawFtp> {
    const c = await RawFtp.connect(port, false, localAddress);
    await c.read();
    await c.startTls(tlsOptions);
    const r = await c.login(user, password);
    if (r.code !== 230) throw new Error(`login: ${r.text}`);
    await c.cmd('PBSZ 0');
    await c.cmd('PROT P');
    return c;
  }

  /** AUTH TLS and switch this connection to TLS. */
  async startTls(options: tls.ConnectionOptions = {}): Promise<void> {
    const r = await this.cmd('AUTH TLS');
    if (r.code !== 234) throw new Error(`AUTH TLS: ${r.text}`);
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('close');
    this.identity = { host: options.host, servername: options.servername };
    const secure = tls.connect({ rejectUnauthorized: false, ...options, socket: this.socket });
    secure.on('session', (s) => (this.session = s));
    await new Promise((r2) => secure.once('secureConnect', r2));
    this.socket = secure;
    this.attach(secure);
  }

  async login(user: string, password: string): Promise<Reply> {
    await this.cmd(`USER ${user}`);
    return this.cmd(`PASS ${password}`);
  }

  /**
   * Open a passive data connection (TLS resuming the control session when `secure`). Under TLS
   * the socket comes before its handshake is done: the server starts TLS only once the transfer
   * command has come, as every client must allow (vsftpd does not even accept the connection
   * before), so waiting for the handshake before sending the command would wait forever.
   */
  async passive(secure: boolean): Promise<{ port: number; open: () => Promise<net.Socket> }> {
    const r = await this.cmd('EPSV');
    const port = Number(/\|\|\|(\d+)\|/.exec(r.text)?.[1]);
    return {
      port,
      open: async () => {
        const raw = net.connect(port, '127.0.0.1');
        // A port the server closed meanwhile (a refused data command ends it) rejects, not an uncaught error.
        await new Promise((res, rej) => {
          raw.once('connect', res);
          raw.once('error', rej);
        });
        if (!secure) return raw;
        const s = this.secureData(raw);
        s.on('error', () => undefined);
        return s;
      },
    };
  }

  /** TLS on a connected data socket, resuming the control connection's session (`options` added). */
  secureData(raw: net.Socket, options: tls.ConnectionOptions = {}): tls.TLSSocket {
    return tls.connect({ ...options, ...this.identity, socket: raw, rejectUnauthorized: false, session: this.session });
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The lines a listing command (LIST, NLST, MLSD) sends over a passive data connection, TLS or not, between its 150 and 226. */
export async function listingLines(c: RawFtp, command: string, secure: boolean): Promise<string[]> {
  const data = await c.passive(secure);
  c.send(`${command}\r\n`);
  const socket = await data.open();
  assert.equal((await c.read())?.code, 150);
  const text = (await readAll(socket)).toString('utf8');
  assert.equal((await c.read())?.code, 226);
  return text.split('\r\n').filter((l) => l !== '');
}

/** A control connection past its greeting, logged in as `user`. */
export async function loggedIn(port: number, user: string, password: string, localAddress?: string): Promise<RawFtp> {
  const c = await RawFtp.connect(port, false, localAddress);
  const greeting = await c.read();
  if (greeting?.code !== 220) throw new Error(`greeting: ${greeting?.text ?? 'closed'}`);
  const login = await c.login(user, password);
  if (login.code !== 230) throw new Error(`login: ${login.text}`);
  return c;
}

/** The reply code to `line`, or 'ended' when the server has closed the session. */
export async function codeOrEnded(c: RawFtp, line: string): Promise<number | 'ended'> {
  try {
    return (await c.cmd(line)).code;
  } catch {
    return 'ended';
  }
}

/** A STOR (or `verb`: APPE) whose bytes the caller sends when it likes: its data connection (TLS when `secure`), once the server said 150. */
export async function startUpload(control: RawFtp, path: string, secure = false, verb: 'STOR' | 'APPE' = 'STOR'): Promise<net.Socket> {
  if ((await control.cmd('TYPE I')).code !== 200) throw new Error('TYPE I refused');
  const pasv = await control.passive(secure);
  control.send(`${verb} ${path}\r\n`);
  const data = await pasv.open();
  const opening = await control.read();
  if (opening?.code !== 150) throw new Error(`STOR: ${opening?.text ?? 'closed'}`);
  return data;
}

/** A passive data connection for `c`'s next transfer, from `from`: the address its control connection came from, as the server requires. */
export async function passiveFrom(c: RawFtp, from: string): Promise<net.Socket> {
  const { port } = await c.passive(false);
  const data = net.connect({ port, host: '127.0.0.1', localAddress: from });
  data.on('error', () => undefined);
  await new Promise((r) => data.once('connect', r));
  return data;
}

/** An anonymous FTP upload of `content` into /incoming from `from`: the reply to STOR's end. */
export async function anonymousUpload(port: number, from: string, name: string, content: string): Promise<string> {
  const c = await loggedIn(port, 'anonymous', 'x@example.org', from);
  try {
    if ((await c.cmd('TYPE I')).code !== 200) throw new Error('TYPE I refused');
    const data = await passiveFrom(c, from);
    const opening = await c.cmd(`STOR /incoming/${name}`);
    if (opening.code !== 150) throw new Error(`STOR: ${opening.text}`);
    data.end(content);
    return (await c.read(30_000))?.text ?? 'closed';
  } finally {
    c.close();
  }
}
