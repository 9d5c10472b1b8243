import assert from 'node:assert/strict';
import { constants, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { RawFtp, readAll, type Reply } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/**
 * Issue #11, vulnerability 1: two clients behind one address (127.0.0.1 for
 * both), racing for the victim's passive port. The attacker never logs in: it
 * did AUTH TLS on a control connection of its own, or a full handshake on one
 * of the victim's data ports, and offers that session on the victim's next
 * passive port before the victim connects.
 */
type Variant = { label: string; version: tls.SecureVersion; tickets: boolean };
const VARIANTS: Variant[] = [
  { label: 'TLS 1.3', version: 'TLSv1.3', tickets: true },
  { label: 'TLS 1.2, session tickets', version: 'TLSv1.2', tickets: true },
  { label: 'TLS 1.2, session IDs', version: 'TLSv1.2', tickets: false },
];

function clientOptions(v: Variant): tls.ConnectionOptions {
  return {
    rejectUnauthorized: false,
    minVersion: v.version,
    maxVersion: v.version,
    ...(v.tickets ? {} : { secureOptions: constants.SSL_OP_NO_TICKET }),
  };
}

/** TLS on `socket` as a client; the session once the server sent it (TLS 1.3 sends it after the handshake). */
async function handshake(socket: net.Socket, options: tls.ConnectionOptions): Promise<{ secure: tls.TLSSocket | null; session: Promise<Buffer> }> {
  const secure = tls.connect({ ...options, socket });
  secure.on('error', () => undefined);
  const session = new Promise<Buffer>((resolve, reject) => {
    secure.once('session', resolve);
    setTimeout(() => reject(new Error('no session from the server')), 10_000).unref();
  });
  session.catch(() => undefined);
  const ok = await new Promise<boolean>((resolve) => {
    secure.once('secureConnect', () => resolve(true));
    secure.once('error', () => resolve(false));
    secure.once('close', () => resolve(false));
  });
  return { secure: ok ? secure : null, session };
}

/** A client that connected and did AUTH TLS, nothing more: no USER, no PASS. */
async function authTlsOnly(port: number, v: Variant): Promise<{ session: Buffer; close(): void }> {
  const c = await RawFtp.connect(port);
  assert.equal((await c.read())?.code, 220);
  assert.equal((await c.cmd('AUTH TLS')).code, 234);
  c.socket.removeAllListeners('data');
  const { secure, session } = await handshake(c.socket, clientOptions(v));
  assert.ok(secure, 'AUTH TLS handshake');
  return { session: await session, close: () => secure.destroy() };
}

/**
 * Connect to a data port and offer `session`; the socket if the server accepted the handshake.
 * The server starts TLS on a data connection only once the transfer command has come (as vsftpd
 * accepts it only then): send it before awaiting this.
 */
async function dataConnect(port: number, v: Variant, session?: Buffer): Promise<{ secure: tls.TLSSocket | null; session: Promise<Buffer> }> {
  const raw = net.connect(port, '127.0.0.1');
  raw.on('error', () => undefined);
  await new Promise((resolve) => raw.once('connect', resolve));
  return handshake(raw, { ...clientOptions(v), ...(session ? { session } : {}) });
}

async function epsv(c: RawFtp): Promise<number> {
  const r = await c.cmd('EPSV');
  assert.equal(r.code, 229, r.text);
  return Number(/\|\|\|(\d+)\|/.exec(r.text)?.[1]);
}

/** The final reply of a transfer command (after any 150). */
async function finalReply(c: RawFtp): Promise<Reply | null> {
  let r = await c.read(30_000);
  while (r && r.code < 200) r = await c.read(30_000);
  return r;
}

/** Whatever the attacker's socket receives within a moment, or until the server closes it. */
async function drain(secure: tls.TLSSocket | null): Promise<Buffer> {
  if (!secure) return Buffer.alloc(0);
  const timer = setTimeout(() => secure.destroy(), 5_000);
  try {
    return await readAll(secure).catch(() => Buffer.alloc(0));
  } finally {
    clearTimeout(timer);
  }
}

describe('FTPS data connections are bound to their own control connection', () => {
  let srv: TestServer;
  const secret = randomBytes(64 * 1024);
  const open: { close(): void }[] = [];

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    writeFileSync(join(srv.home('alice'), 'secret.bin'), secret);
  });
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });
  after(() => srv.stop());

  /** The victim: a logged-in client with `v`'s TLS version and resumption mechanism. */
  async function victim(v: Variant): Promise<RawFtp> {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password', clientOptions(v));
    open.push(c);
    assert.equal((await c.cmd('TYPE I')).code, 200);
    return c;
  }

  /** The victim, undisturbed, still downloads with its own session. */
  async function legitimateDownload(c: RawFtp, v: Variant): Promise<void> {
    const port = await epsv(c);
    const connecting = dataConnect(port, v, c.session);
    c.send('RETR secret.bin\r\n');
    const data = await connecting;
    assert.ok(data.secure, 'the victim resumes its own session');
    const got = await readAll(data.secure);
    assert.equal((await finalReply(c))?.code, 226);
    assert.ok(got.equals(secret), 'the victim got its file');
  }

  for (const v of VARIANTS) {
    describe(v.label, () => {
      it('RETR: a client that did only AUTH TLS cannot take the download', async () => {
        const c = await victim(v);
        const attacker = await authTlsOnly(srv.ftpPort, v);
        open.push(attacker);
        const port = await epsv(c);
        const stealing = dataConnect(port, v, attacker.session);
        c.send('RETR secret.bin\r\n');
        const stolen = await stealing;
        const [bytes, reply] = await Promise.all([drain(stolen.secure), finalReply(c)]);
        assert.equal(bytes.length, 0, `the attacker received ${bytes.length} bytes of the victim's download`);
        assert.equal(reply?.code, 425);
        assert.match(reply?.text ?? '', /resume the TLS session/);
        await legitimateDownload(c, v);
      });

      it('STOR: a client that did only AUTH TLS cannot write into the upload', async () => {
        const c = await victim(v);
        const attacker = await authTlsOnly(srv.ftpPort, v);
        open.push(attacker);
        const port = await epsv(c);
        const injecting = dataConnect(port, v, attacker.session);
        c.send('STOR upload.txt\r\n');
        (await injecting).secure?.end('INJECTED BY THE ATTACKER');
        const reply = await finalReply(c);
        assert.equal(reply?.code, 425);
        const path = join(srv.home('alice'), 'upload.txt');
        assert.ok(!existsSync(path) || !readFileSync(path, 'utf8').includes('INJECTED'), "the attacker's bytes landed in the victim's file");
        // The victim's own upload still works.
        const connecting = dataConnect(await epsv(c), v, c.session);
        c.send('STOR upload.txt\r\n');
        const again = await connecting;
        assert.ok(again.secure);
        again.secure.end('the victim wrote this');
        assert.equal((await finalReply(c))?.code, 226);
        assert.equal(readFileSync(path, 'utf8'), 'the victim wrote this');
      });

      it("a session begun on the victim's own data port resumes nothing on the next one", async () => {
        const c = await victim(v);
        // First race: a full handshake on the victim's passive port (refused, but did it leave a session behind?).
        const racing = dataConnect(await epsv(c), v);
        c.send('LIST\r\n');
        const first = await racing;
        assert.equal((await finalReply(c))?.code, 425);
        first.secure?.destroy();
        const leftover = await Promise.race([first.session, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1000))]);
        // Second race: resume whatever that handshake handed out.
        const port = await epsv(c);
        const stealing = dataConnect(port, v, leftover);
        c.send('RETR secret.bin\r\n');
        const stolen = await stealing;
        const [bytes, reply] = await Promise.all([drain(stolen.secure), finalReply(c)]);
        assert.equal(bytes.length, 0, `the attacker received ${bytes.length} bytes of the victim's download`);
        assert.equal(reply?.code, 425);
        await legitimateDownload(c, v);
      });
    });
  }

  it("implicit FTPS: the client's data connections resume its control session", async () => {
    // Node 22 offers a session only to a connection made for the server name it came from: the
    // control connection's 127.0.0.1, not the 'localhost' a TLS socket over a bare socket defaults to.
    const c = await RawFtp.connect(srv.ftpsPort, true);
    open.push(c);
    assert.equal((await c.read())?.code, 220);
    assert.equal((await c.login('alice', 'alice password')).code, 230);
    assert.equal((await c.cmd('PBSZ 0')).code, 200);
    assert.equal((await c.cmd('PROT P')).code, 200);
    assert.equal((await c.cmd('TYPE I')).code, 200);
    for (const round of [1, 2]) {
      const pasv = await c.passive(true);
      c.send('RETR secret.bin\r\n');
      const data = (await pasv.open()) as tls.TLSSocket;
      const resumed = new Promise((resolve) => data.once('secureConnect', () => resolve(data.isSessionReused())));
      const opening = await c.read();
      assert.equal(opening?.code, 150, `round ${round}: ${opening?.text}`);
      const got = await readAll(data);
      assert.equal((await finalReply(c))?.code, 226);
      assert.equal(await resumed, true, `round ${round}: resumed`);
      assert.ok(got.equals(secret), `round ${round}: the file`);
    }
  });
});
