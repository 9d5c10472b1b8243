import type net from 'node:net';
import type ssh2 from 'ssh2';
import { RawFtp, readAll, type Reply } from './ftp-raw.js';
import type { TestServer } from './server.js';
import { call, sftpOf, sshConnect } from './ssh.js';

/** The four ways in: plain FTP (needs `ftp.tls: optional`), explicit and implicit FTPS, SFTP. */
export const KINDS = ['ftp', 'ftpes', 'ftps', 'sftp'] as const;
export type Kind = (typeof KINDS)[number];

/**
 * The same few file operations over any protocol, for tests that run one
 * attack everywhere. Each resolves with 'ok' (or the data) or rejects with an
 * Error whose message is the server's reply: FTP "code text", SFTP "status message".
 */
export interface FileClient {
  readonly kind: Kind;
  rename(from: string, to: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  get(path: string): Promise<Buffer>;
  put(path: string, data: string): Promise<void>;
  remove(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  close(): void;
}

export async function connectClient(kind: Kind, srv: TestServer, user: string, password: string): Promise<FileClient> {
  if (kind === 'sftp') return SftpClient.connect(srv, user, password);
  return FtpClient.connect(kind, srv, user, password);
}

export class FtpClient implements FileClient {
  private constructor(
    readonly kind: Kind,
    readonly raw: RawFtp,
  ) {}

  static async connect(kind: Exclude<Kind, 'sftp'>, srv: TestServer, user: string, password: string): Promise<FtpClient> {
    let raw: RawFtp;
    if (kind === 'ftpes') {
      raw = await RawFtp.secureLogin(srv.ftpPort, user, password);
    } else {
      raw = await RawFtp.connect(kind === 'ftps' ? srv.ftpsPort : srv.ftpPort, kind === 'ftps');
      await raw.read();
      const r = await raw.login(user, password);
      if (r.code !== 230) throw new Error(`login: ${r.text}`);
      if (kind === 'ftps') {
        await raw.cmd('PBSZ 0');
        await raw.cmd('PROT P');
      }
    }
    return new FtpClient(kind, raw);
  }

  cmd(line: string): Promise<Reply> {
    return this.raw.cmd(line);
  }

  /**
   * One command over a fresh passive data connection. The replies are those
   * of the control connection (one when refused, 150 and the final one when
   * run); `upload` is sent and the data connection closed, else all is read.
   */
  async transfer(line: string, upload?: string): Promise<{ replies: Reply[]; data: Buffer }> {
    const endpoint = await this.raw.passive(this.kind !== 'ftp');
    const sock: net.Socket = await endpoint.open();
    this.raw.send(line + '\r\n');
    const first = await this.raw.read();
    if (!first) throw new Error(`connection closed after ${line}`);
    if (first.code !== 150 && first.code !== 125) {
      sock.destroy();
      return { replies: [first], data: Buffer.alloc(0) };
    }
    let data: Buffer = Buffer.alloc(0);
    if (upload !== undefined) sock.end(upload);
    else data = await readAll(sock);
    const last = await this.raw.read();
    if (!last) throw new Error(`connection closed during ${line}`);
    return { replies: [first, last], data };
  }

  private async expect(line: string, code: number): Promise<void> {
    const r = await this.cmd(line);
    if (r.code !== code) throw new Error(r.text);
  }

  private async run(line: string, upload?: string): Promise<Buffer> {
    const { replies, data } = await this.transfer(line, upload);
    const last = replies[replies.length - 1] as Reply;
    if (last.code !== 226) throw new Error(last.text);
    return data;
  }

  async rename(from: string, to: string): Promise<void> {
    await this.expect(`RNFR ${from}`, 350);
    await this.expect(`RNTO ${to}`, 250);
  }

  async list(dir: string): Promise<string[]> {
    const data = await this.run(`NLST ${dir}`);
    // NLST names a directory's entries after the path given (`dir/name`): the names alone, as SFTP's READDIR gives them.
    return data.toString().split('\r\n').filter((l) => l !== '').map((l) => l.slice(l.lastIndexOf('/') + 1));
  }

  get(path: string): Promise<Buffer> {
    return this.run(`RETR ${path}`);
  }

  async put(path: string, data: string): Promise<void> {
    await this.run(`STOR ${path}`, data);
  }

  remove(path: string): Promise<void> {
    return this.expect(`DELE ${path}`, 250);
  }

  rmdir(path: string): Promise<void> {
    return this.expect(`RMD ${path}`, 250);
  }

  close(): void {
    this.raw.close();
  }
}

export class SftpClient implements FileClient {
  readonly kind = 'sftp';

  private constructor(
    private readonly conn: ssh2.Client,
    readonly sftp: ssh2.SFTPWrapper,
  ) {}

  static async connect(srv: TestServer, user: string, password: string): Promise<SftpClient> {
    const conn = await sshConnect({ port: srv.sftpPort, username: user, password });
    return new SftpClient(conn, await sftpOf(conn));
  }

  rename(from: string, to: string): Promise<void> {
    return call((cb) => this.sftp.rename(from, to, cb));
  }

  async list(dir: string): Promise<string[]> {
    const entries = await call<ssh2.FileEntry[]>((cb) => this.sftp.readdir(dir, cb));
    return entries.map((e) => e.filename);
  }

  get(path: string): Promise<Buffer> {
    return call<Buffer>((cb) => this.sftp.readFile(path, cb));
  }

  put(path: string, data: string): Promise<void> {
    return call((cb) => this.sftp.writeFile(path, data, cb));
  }

  remove(path: string): Promise<void> {
    return call((cb) => this.sftp.unlink(path, cb));
  }

  rmdir(path: string): Promise<void> {
    return call((cb) => this.sftp.rmdir(path, cb));
  }

  close(): void {
    this.conn.end();
  }
}

/** 'ok', or the refusal's text: to assert that something was refused, and how. */
export async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    const e = err as { code?: number | string; message?: string };
    return typeof e.code === 'number' ? `${e.code} ${e.message ?? ''}` : String(e.message ?? err);
  }
}
