import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Client as FtpClient } from 'basic-ftp';
import type ssh2 from 'ssh2';
import { UPLOAD_TEMP_PREFIX } from '../../src/session/paths.js';
import { sluice } from './cli.js';
import type { TestServer } from './server.js';
import { call, sftpOf, sshConnect } from './ssh.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/**
 * What a home really holds, as the quota counts it: bytes of regular files,
 * each inode once, and every name (file, link, directory, symlink); upload
 * temporaries apart. Symlinks are not followed.
 */
export function diskUsage(home: string): { bytes: number; files: number; temps: string[]; tempBytes: number } {
  const seen = new Set<number>();
  const out = { bytes: 0, files: 0, temps: [] as string[], tempBytes: 0 };
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      // A name the server removes while we walk (an upload's temporary at its end) is not counted.
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (name.startsWith(UPLOAD_TEMP_PREFIX)) {
        out.temps.push(path);
        out.tempBytes += st.size;
        continue;
      }
      out.files++;
      if (st.isDirectory()) walk(path);
      else if (st.isFile() && !seen.has(st.ino)) {
        seen.add(st.ino);
        out.bytes += st.size;
      }
    }
  };
  walk(home);
  return out;
}

/** The usage the server persisted, as an administrator reads it. */
export function persistedUsage(srv: Pick<TestServer, 'dir'>, user: string): { bytes: number; files: number } {
  const r = sluice(srv.dir, ['user', 'show', user, '--json']);
  if (r.code !== 0) throw new Error(`user show ${user}: ${r.stderr}`);
  const u = JSON.parse(r.stdout) as { usedBytes: number; usedFiles: number };
  return { bytes: u.usedBytes, files: u.usedFiles };
}

export async function waitFor(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An upload the test paces: bytes go when it says, the end when it says. */
export interface PacedUpload {
  write(data: Buffer): Promise<void>;
  /** Ends the upload; resolves to null when the server accepted it, else the error. */
  finish(): Promise<Error | null>;
}

/** One logged-in user over one protocol, as the attacks need it. */
export interface Remote {
  put(path: string, data: Buffer): Promise<void>;
  start(path: string): Promise<PacedUpload>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  close(): Promise<void>;
}

/** FTPS (explicit, AUTH TLS) with basic-ftp; each upload on a connection of its own. */
export async function ftpsRemote(srv: TestServer, user: string, password: string): Promise<Remote> {
  const connect = async () => {
    const c = new FtpClient(60_000);
    await c.access({ host: '127.0.0.1', port: srv.ftpPort, user, password, secure: true, secureOptions: { rejectUnauthorized: false } });
    return c;
  };
  const control = await connect();
  return {
    async put(path, data) {
      const source = new PassThrough();
      source.end(data);
      await control.uploadFrom(source, path);
    },
    async start(path) {
      const c = await connect();
      const source = new PassThrough();
      const done = c.uploadFrom(source, path).then(() => null, (e: Error) => e);
      return {
        // Once the server has refused the upload nothing reads the source any more.
        write: (data) => Promise.race([new Promise<void>((resolve) => source.write(data, () => resolve())), done.then(() => undefined)]),
        async finish() {
          source.end();
          const result = await done;
          c.close();
          return result;
        },
      };
    },
    rename: async (from, to) => void (await control.rename(from, to)),
    remove: (path) => control.remove(path).then(() => undefined),
    async close() {
      control.close();
    },
  };
}

/** SFTP with the ssh2 client: one connection, a handle per upload. */
export async function sftpRemote(srv: TestServer, user: string, password: string): Promise<Remote & { sftp: ssh2.SFTPWrapper }> {
  const conn = await sshConnect({ port: srv.sftpPort, username: user, password });
  const sftp = await sftpOf(conn);
  const start = async (path: string): Promise<PacedUpload> => {
    const handle = await call<Buffer>((cb) => sftp.open(path, 'w', cb));
    let position = 0;
    let failed: Error | null = null;
    return {
      async write(data) {
        const at = position;
        position += data.length;
        try {
          await call((cb) => sftp.write(handle, data, 0, data.length, at, cb));
        } catch (err) {
          failed ??= err as Error;
        }
      },
      async finish() {
        // A client may close after a failed write, as OpenSSH does: the close must not complete the file.
        const closed = await call((cb) => sftp.close(handle, cb)).then(() => null, (e: Error) => e);
        return failed ?? closed;
      },
    };
  };
  return {
    sftp,
    async put(path, data) {
      const up = await start(path);
      await up.write(data);
      const err = await up.finish();
      if (err) throw err;
    },
    start,
    rename: (from, to) => call((cb) => sftp.rename(from, to, cb)),
    remove: (path) => call((cb) => sftp.unlink(path, cb)),
    async close() {
      conn.end();
    },
  };
}
