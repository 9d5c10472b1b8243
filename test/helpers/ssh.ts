import assert from 'node:assert/strict';
import ssh2 from 'ssh2';
import { FXP, Writer } from '../../src/sftp/codec.js';

export interface SshLogin {
  port: number;
  /** 127.0.0.1 unless given (a balancer in front of the server listens elsewhere). */
  host?: string;
  username: string;
  password?: string;
  privateKey?: Buffer | string;
  /** Connect from another loopback address (127.0.0.2...), as a second client would. */
  localAddress?: string;
  /** Connect from this port (the records must name it, behind a balancer too). */
  localPort?: number;
  /** The authentication attempts, in order, instead of one from password/privateKey. */
  authHandler?: ssh2.ConnectConfig['authHandler'];
  /** A socket connected already, instead of one to host and port. */
  sock?: ssh2.ConnectConfig['sock'];
}

/** An ssh2 client connection; rejects on authentication failure. */
export function sshConnect(login: SshLogin): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    // A connection refused at accept may report twice (reset, then lost before handshake).
    c.on('error', reject);
    // A server that refuses at once (connection limit) just closes: that is a failure too.
    c.once('close', () => reject(new Error('connection closed before authentication')));
    c.connect({ host: '127.0.0.1', readyTimeout: 20_000, tryKeyboard: false, ...login });
  });
}

export function sftpOf(c: ssh2.Client): Promise<ssh2.SFTPWrapper> {
  return new Promise((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
}

/** Promise form of an ssh2 SFTP call. */
export function call<T = void>(fn: (cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

/** The SFTP status code of a failed call (ssh2 puts it on err.code). */
export async function statusOf(p: Promise<unknown>): Promise<number | string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as { code?: number | string }).code ?? String(err);
  }
}

/**
 * An ed25519 key pair from ssh2's generator, drawn again when ssh2's own
 * parser rejects what it wrote (it drops a leading zero byte about 1 time in
 * 200; the server's host keys are checked the same way, see certs/ensure.ts).
 */
export function userKeyPair(comment?: string): { private: string; public: string } {
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment === undefined ? {} : { comment });
    if (!(ssh2.utils.parseKey(pair.public) instanceof Error) && !(ssh2.utils.parseKey(pair.private) instanceof Error)) return pair;
  }
}

/** Whole SFTP packets (length prefix stripped) from a raw subsystem channel, one at a time, on demand. */
export function sftpPackets(ch: ssh2.ClientChannel): () => Promise<Buffer> {
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  ch.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  return async () => {
    for (;;) {
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        const packet = buf.subarray(4, 4 + n);
        buf = buf.subarray(4 + n);
        return packet;
      }
      await new Promise<void>((r) => (wake = r));
    }
  };
}

/** An SFTP channel past INIT/VERSION, and its packet reader. */
export async function initialised(conn: ssh2.Client): Promise<{ ch: ssh2.ClientChannel; next: () => Promise<Buffer> }> {
  const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => conn.subsys('sftp', (err, c) => (err ? reject(err) : resolve(c))));
  const next = sftpPackets(ch);
  ch.write(new Writer(FXP.INIT).uint32(3).finish());
  assert.equal((await next())[0], FXP.VERSION);
  return { ch, next };
}
