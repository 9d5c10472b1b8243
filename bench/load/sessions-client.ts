/**
 * A client process of the session workloads (bench/workloads/sessions.ts),
 * forked so that thousands of client connections, and the client's own CPU,
 * stay out of the process that measures. Told what to do by one IPC message:
 *
 * - `hold`: open `count` authenticated sessions (bounded concurrency, source
 *   addresses round robin), report, keep them open until told `close`.
 * - `logins`: start one login every 1/rate s for `seconds`, each closed once
 *   logged in, and report every login's latency (connect to logged in).
 * - `serial`: `count` logins one after another, each closed (and its close
 *   awaited) before the next starts, and report every login's latency: the
 *   latency of an idle server, with no queue in front of it.
 */
import net from 'node:net';
import tls from 'node:tls';
import ssh2 from 'ssh2';

export type Protocol = 'sftp' | 'ftps';

export interface Credentials {
  user: string;
  /** FTPS, and SFTP logins by password. */
  password: string;
  /** SFTP key login (no argon2): OpenSSH private key text. */
  privateKey?: string;
}

export type Order =
  | { kind: 'hold'; protocol: Protocol; port: number; count: number; concurrency: number; addresses: string[]; users: Credentials[] }
  | { kind: 'logins'; protocols: Protocol[]; ports: Record<Protocol, number>; rate: number; seconds: number; users: Credentials[] }
  | { kind: 'serial'; protocol: Protocol; port: number; count: number; who: Credentials };

export type Report =
  | { kind: 'held'; opened: number; failed: number; errors: string[]; seconds: number }
  | { kind: 'logins'; latencies: Record<Protocol, number[]>; failed: number; errors: string[] }
  | { kind: 'serial'; latencies: number[]; error: string | null };

/** Something to close, once logged in; resolves once the connection is gone. */
type Open = { close(): Promise<void> };

/** Replies of an FTP control connection, one at a time (the bench never pipelines). */
function replies(socket: net.Socket): () => Promise<string> {
  let buf = '';
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const feed = (d: Buffer) => {
    buf += d.toString('latin1');
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      // Only a final line (code and space) ends a reply.
      if (/^\d{3} /.test(line)) lines.push(line);
    }
    wake?.();
  };
  socket.on('data', feed);
  socket.on('close', () => {
    ended = true;
    wake?.();
  });
  return async () => {
    while (lines.length === 0) {
      if (ended) throw new Error('control connection closed');
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
    return lines.shift() as string;
  };
}

async function expect(read: () => Promise<string>, code: string): Promise<void> {
  const line = await read();
  if (!line.startsWith(code)) throw new Error(`expected ${code}, got ${line.slice(0, 80)}`);
}

/** Explicit FTPS as a client does it: greeting, AUTH TLS, handshake, USER, PASS. */
async function ftpsLogin(port: number, localAddress: string, who: Credentials): Promise<Open> {
  const raw = net.connect({ port, host: '127.0.0.1', localAddress });
  raw.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', reject);
    });
    const plain = replies(raw);
    await expect(plain, '220');
    raw.write('AUTH TLS\r\n');
    await expect(plain, '234');
    raw.removeAllListeners('data');
    const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
    secure.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed in TLS handshake')));
    });
    const read = replies(secure);
    secure.write(`USER ${who.user}\r\n`);
    await expect(read, '331');
    secure.write(`PASS ${who.password}\r\n`);
    await expect(read, '230');
    return {
      close: () => new Promise<void>((resolve) => {
        secure.once('close', () => resolve());
        secure.end('QUIT\r\n');
      }),
    };
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

/** SSH connection, authentication, and (`subsystem`) the sftp subsystem of one session channel. */
function sftpLogin(port: number, localAddress: string, who: Credentials, subsystem: boolean): Promise<Open> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.on('error', reject);
    client.on('close', () => reject(new Error('ssh connection closed')));
    const open: Open = {
      close: () => new Promise<void>((done) => {
        client.once('close', () => done());
        client.end();
      }),
    };
    client.on('ready', () => {
      if (!subsystem) return resolve(open);
      client.sftp((err) => (err ? reject(err) : resolve(open)));
    });
    client.connect({
      host: '127.0.0.1',
      port,
      localAddress,
      username: who.user,
      ...(who.privateKey ? { privateKey: who.privateKey } : { password: who.password }),
      readyTimeout: 120_000,
      algorithms: { cipher: ['aes128-gcm@openssh.com'] },
    });
    // ssh2's client leaves Nagle on: its NEWKEYS and the next request, written back to back,
    // then wait for the server's delayed ACK (40 ms) about half the time, which swamped what
    // these logins measure. OpenSSH's client writes them in one go.
    client.setNoDelay(true);
  });
}

function login(protocol: Protocol, port: number, localAddress: string, who: Credentials, subsystem: boolean): Promise<Open> {
  return protocol === 'ftps' ? ftpsLogin(port, localAddress, who) : sftpLogin(port, localAddress, who, subsystem);
}

async function hold(order: Extract<Order, { kind: 'hold' }>): Promise<void> {
  const open: Open[] = [];
  const errors: string[] = [];
  let failed = 0;
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    for (let i = next++; i < order.count; i = next++) {
      const address = order.addresses[i % order.addresses.length] as string;
      const who = order.users[i % order.users.length] as Credentials;
      try {
        open.push(await login(order.protocol, order.port, address, who, true));
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push(String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: order.concurrency }, worker));
  const report: Report = { kind: 'held', opened: open.length, failed, errors, seconds: (performance.now() - start) / 1000 };
  process.send?.(report);
  process.once('message', () => {
    for (const o of open) void o.close();
    // Closing thousands gracefully is not what is measured.
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

async function logins(order: Extract<Order, { kind: 'logins' }>): Promise<void> {
  const latencies: Record<Protocol, number[]> = { sftp: [], ftps: [] };
  const errors: string[] = [];
  let failed = 0;
  const total = Math.round(order.rate * order.seconds);
  const start = performance.now();
  const running: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    // On schedule, not after the previous login: a slow server must not slow the offered load.
    const due = start + (i * 1000) / order.rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const protocol = order.protocols[i % order.protocols.length] as Protocol;
    const who = order.users[i % order.users.length] as Credentials;
    const t0 = performance.now();
    running.push(
      login(protocol, order.ports[protocol], '127.0.0.1', who, false).then(
        (o) => {
          latencies[protocol].push(performance.now() - t0);
          void o.close();
        },
        (err: unknown) => {
          failed++;
          if (errors.length < 5) errors.push(String(err));
        },
      ),
    );
  }
  await Promise.all(running);
  const report: Report = { kind: 'logins', latencies, failed, errors };
  process.send?.(report);
  setTimeout(() => process.exit(0), 1000).unref();
}

async function serial(order: Extract<Order, { kind: 'serial' }>): Promise<void> {
  const latencies: number[] = [];
  let error: string | null = null;
  try {
    for (let i = 0; i < order.count; i++) {
      const t0 = performance.now();
      const o = await login(order.protocol, order.port, '127.0.0.1', order.who, false);
      latencies.push(performance.now() - t0);
      await o.close();
    }
  } catch (err) {
    // The first failure ends the run: an idle server has no reason to refuse a login.
    error = `login ${latencies.length + 1}: ${String(err)}`;
  }
  const report: Report = { kind: 'serial', latencies, error };
  process.send?.(report);
  setTimeout(() => process.exit(0), 1000).unref();
}

process.once('message', (order: Order) => {
  void (order.kind === 'hold' ? hold(order) : order.kind === 'logins' ? logins(order) : serial(order));
});
