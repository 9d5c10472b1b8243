import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type ssh2 from 'ssh2';
import { FXP, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sftpPackets, sshConnect } from './helpers/ssh.js';
import { openWide, stallKeyExchange } from './helpers/stall.js';

const MiB = 1024 * 1024;
/** How much the server may grow while one hostile client does its worst. */
const BOUND = 100 * MiB;
/**
 * 4 connections with 10 channels each. What they may make the server hold is 4 x 4 MiB
 * (sftp.maxQueuedBytes, 2 MiB here, for requests and replies, as much again in SSH windows);
 * RSS also shows what the allocator and the GC keep of the data that flowed meanwhile
 * (60-140 MiB here, more on a slower machine). ssh2's own windows, 2 MiB a channel and as
 * much again in its stream, would hold 144 MiB on top of that.
 */
const MANY_CHANNELS_BOUND = 200 * MiB;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS readable');
  return Number(m[1]) * 1024;
}

/** Highest RSS of the process seen while `during` runs, sampled every 50 ms. */
async function peakRss(pid: number, during: () => Promise<void>): Promise<number> {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 50);
  try {
    await during();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rssOf(pid));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The raw sftp subsystem channel: we speak the SFTP packets ourselves. */
function subsystem(conn: ssh2.Client): Promise<ssh2.ClientChannel> {
  return new Promise((resolve, reject) => conn.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch))));
}


/** INIT, then OPEN `path` (for reading by default): returns the handle, and leaves the channel unread from then on. */
async function openForRead(ch: ssh2.ClientChannel, path: string, flags: number = OPEN_FLAGS.READ): Promise<Buffer> {
  const next = sftpPackets(ch);
  ch.write(new Writer(FXP.INIT).uint32(3).finish());
  assert.equal((await next())[0], FXP.VERSION);
  ch.write(new Writer(FXP.OPEN, 1).string(path).uint32(flags).uint32(0).finish());
  const reply = await next();
  assert.equal(reply[0], FXP.HANDLE, 'OPEN answered with a handle');
  ch.removeAllListeners('data');
  ch.pause();
  return reply.subarray(9, 9 + reply.readUInt32BE(5));
}

/** READ requests asking for `length` bytes at offset 0, ids from `first`. */
function reads(handle: Buffer, count: number, length: number, first: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(new Writer(FXP.READ, first + i).bytes(handle).uint64(0).uint32(length).finish());
  return Buffer.concat(out);
}

interface Internals {
  _protocol: {
    channelData(id: number, data: Buffer): void;
    channelWindowAdjust(id: number, amount: number): void;
    tcpipForward(address: string, port: number, wantReply: boolean): void;
    authNone(user: string): void;
    session(chan: number, window: number, packetSize: number): void;
  };
  _sock: Socket;
}

/**
 * Sends `request` as fast as the server takes them, never reading what comes
 * back, until `count` went, the server has stopped reading (what this client
 * wrote sat unsent for a second) or the server closed the connection (before
 * login, its deadline does so: a loaded run's flood outlasted it, and the
 * writes to the dead socket that followed counted as taken).
 */
async function flood(conn: ssh2.Client, request: () => void, count: number): Promise<{ sent: number; closed: boolean }> {
  const socket = (conn as unknown as Internals)._sock;
  socket.pause();
  let sent = 0;
  for (let stalled = 0; sent < count && stalled < 50 && !socket.destroyed; ) {
    if (socket.writableLength > 4 * MiB) {
      stalled++;
      await sleep(20);
      continue;
    }
    stalled = 0;
    for (let i = 0; i < 1000; i++) request();
    sent += 1000;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { sent, closed: socket.destroyed };
}

/** One connection's answers to this many of ssh2's own refusals held the old server past BOUND. */
const FLOOD = 1_000_000;

/** A fresh server for one attack: memory one left behind must not hide the next one's growth. */
async function victim(t: TestContext) {
  // One user runs 4 connections x 10 channels below: more sessions than a user gets by default.
  // A small budget (default 8 MiB) keeps what the server may hold well apart from the GC's
  // leftovers of what flowed, which vary with the machine's speed.
  const srv = await TestServer.start({
    users: [{ name: 'mona', password: 'mona password', args: ['--perms', 'all'] }],
    yaml: 'limits:\n  maxSessionsPerUser: 0\nsftp:\n  maxQueuedBytes: 2MiB\n',
  });
  t.after(() => srv.stop());
  writeFileSync(join(srv.home('mona'), 'big.bin'), Buffer.alloc(4 * MiB, 7));
  const login = () => sshConnect({ port: srv.sftpPort, username: 'mona', password: 'mona password' });
  // Warm the server up (key exchange, first session) so the baseline is not its start-up growth.
  const c = await login();
  await call<Buffer>((cb) => sftpOf(c).then((s) => s.readFile('/big.bin', cb), cb));
  c.end();
  await sleep(300);
  return {
    srv,
    pid: srv.pid as number,
    login,
    async stillServes(): Promise<void> {
      const c = await login();
      try {
        const s = await sftpOf(c);
        const data = await call<Buffer>((cb) => s.readFile('/big.bin', cb));
        assert.equal(data.length, 4 * MiB);
      } finally {
        c.end();
      }
    },
  };
}

// The attacks run at once, each against its own server process: most of their time is
// spent waiting for memory that should not grow, and each bound is on its own server's RSS.
describe('SFTP memory stays bounded whatever a logged-in client does', { concurrency: true }, () => {
  it('disconnects a client that sends past the SSH window, without buffering what it sent', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conn = await login();
    const ch = await subsystem(conn);
    const handle = await openForRead(ch, '/big.bin');
    // Stall the server's reading first (its replies cannot leave: we read nothing), so whatever
    // arrives next has to wait in its buffers.
    ch.write(reads(handle, 200, 2 ** 31, 10));
    await sleep(500);
    const internals = conn as unknown as Internals;
    const id = (ch as unknown as { outgoing: { id: number } }).outgoing.id;
    let closed = false;
    conn.on('close', () => (closed = true));
    conn.on('error', () => undefined);
    // Not a divisor of the window: ssh2 drops data only when the window is exactly 0.
    const chunk = Buffer.alloc(30000, 0x41);
    let sent = 0;
    const peak = await peakRss(pid, async () => {
      // Straight to the transport, past the window ssh2's channel would respect.
      while (!closed && sent < 400 * MiB) {
        internals._protocol.channelData(id, chunk);
        sent += chunk.length;
        if (internals._sock.writableLength > 4 * MiB) {
          await new Promise((r) => {
            internals._sock.once('drain', r);
            internals._sock.once('close', r);
          });
        }
      }
      await sleep(1000);
    });
    conn.end();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(closed, `the server kept the connection after ${Math.round(sent / MiB)} MiB past the window`);
    await stillServes();
  });

  it('holds a bounded amount for READ(2^31) requests whose replies the client never reads', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conns = await Promise.all([login(), login()]);
    const peak = await peakRss(pid, async () => {
      for (const conn of conns) {
        const ch = await subsystem(conn);
        const handle = await openForRead(ch, '/big.bin');
        ch.write(reads(handle, 2000, 2 ** 31, 10));
      }
      await sleep(5000);
    });
    for (const conn of conns) conn.end();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('holds a bounded amount over many channels whose READ(2^32-1) replies are never read', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    // What the SSH layer buffers for a channel that stopped reading counts too: 4 connections
    // with every channel they may open must stay within a few times sftp.maxQueuedBytes each.
    const before = rssOf(pid);
    const conns = await Promise.all([login(), login(), login(), login()]);
    const peak = await peakRss(pid, async () => {
      await Promise.all(
        conns.map(async (conn) => {
          for (let c = 0; c < 10; c++) {
            const ch = await subsystem(conn);
            const handle = await openForRead(ch, '/big.bin');
            ch.write(reads(handle, 2000, 2 ** 32 - 1, 10));
          }
        }),
      );
      await sleep(5000);
    });
    for (const conn of conns) conn.end();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < MANY_CHANNELS_BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('holds a bounded amount for channels that send WRITEs while the connection cannot take them', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conns = await Promise.all([login(), login(), login(), login()]);
    const peak = await peakRss(pid, async () => {
      await Promise.all(
        conns.map(async (conn, n) => {
          // One channel fills the connection's budget with replies it never reads...
          const reader = await subsystem(conn);
          reader.write(reads(await openForRead(reader, '/big.bin'), 2000, 2 ** 32 - 1, 10));
          await sleep(500);
          // ...so what the others send can only wait: in the SSH layer, unless its window is counted.
          for (let c = 1; c < 10; c++) {
            const ch = await subsystem(conn);
            const handle = await openForRead(ch, `/w${n}-${c}.bin`, OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT);
            const chunk = Buffer.alloc(32 * 1024 - 64, 0x61);
            for (let i = 0; i < 200; i++) {
              ch.write(new Writer(FXP.WRITE, 10 + i).bytes(handle).uint64(i * chunk.length).bytes(chunk).finish());
            }
          }
        }),
      );
      // Their windows fill at once; waiting longer only lets the trickle of WRITEs churn memory.
      await sleep(1500);
    });
    for (const conn of conns) conn.end();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < MANY_CHANNELS_BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('holds a bounded amount for global requests ssh2 refuses itself, to a client that reads nothing', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conn = await login();
    conn.on('error', () => undefined);
    const internals = conn as unknown as Internals;
    let sent = 0;
    let closed = false;
    const peak = await peakRss(pid, async () => {
      ({ sent, closed } = await flood(conn, () => internals._protocol.tcpipForward('0.0.0.0', 0, true), FLOOD));
    });
    internals._sock.destroy();
    t.diagnostic(`${sent} requests sent${closed ? ' (then the server closed the connection)' : ''}; server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(sent < FLOOD, 'the server went on reading');
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('holds a bounded amount for userauth "none" requests before login, to a client that reads nothing', async (t) => {
    const { srv, pid, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conn = new (await import('ssh2')).default.Client();
    conn.on('error', () => undefined);
    const internals = conn as unknown as Internals;
    // The handshake completes; the client then asks no method itself and floods "none" by hand.
    const asked = new Promise<void>((resolve) => {
      conn.connect({ host: '127.0.0.1', port: srv.sftpPort, username: 'mona', authHandler: () => resolve(), readyTimeout: 20_000 });
    });
    await asked;
    let sent = 0;
    let closed = false;
    const peak = await peakRss(pid, async () => {
      ({ sent, closed } = await flood(conn, () => internals._protocol.authNone('mona'), FLOOD));
    });
    internals._sock.destroy();
    t.diagnostic(`${sent} requests sent${closed ? ' (then the server closed the connection)' : ''}; server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(sent < FLOOD, 'the server went on reading');
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('holds a bounded amount when the client opens its window without reading what arrives', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conn = await login();
    const ch = await subsystem(conn);
    const handle = await openForRead(ch, '/big.bin');
    const internals = conn as unknown as Internals;
    const id = (ch as unknown as { outgoing: { id: number } }).outgoing.id;
    conn.on('error', () => undefined);
    // Stop reading the TCP socket, then grant the server an enormous window: its replies can
    // only pile up in its own socket buffer.
    internals._sock.pause();
    internals._protocol.channelWindowAdjust(id, 0xfffff000);
    const peak = await peakRss(pid, async () => {
      ch.write(reads(handle, 2000, 2 ** 31, 10));
      await sleep(5000);
    });
    conn.end();
    internals._sock.destroy();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('refuses channels whose client takes packets of one byte, whose data would take about 40 times its bytes', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conn = await login();
    const internals = conn as unknown as Internals;
    let closed = false;
    conn.on('close', () => (closed = true));
    conn.on('error', () => undefined);
    // Every channel this client opens says it takes packets of 1 byte at most.
    const open = internals._protocol.session.bind(internals._protocol);
    internals._protocol.session = (chan, window) => open(chan, window, 1);
    const peak = await peakRss(pid, async () => {
      const channels: { ch: ssh2.ClientChannel; handle: Buffer }[] = [];
      for (let c = 0; c < 10 && !closed; c++) {
        const ch = await subsystem(conn).catch(() => null);
        const handle = ch && (await Promise.race([openForRead(ch, '/big.bin'), sleep(2000).then(() => null)]));
        if (ch && handle) channels.push({ ch, handle });
      }
      internals._sock.pause();
      for (const { ch, handle } of channels) ch.write(reads(handle, 64, 2 ** 31, 10));
      await sleep(5000);
    });
    internals._sock.destroy();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(closed, 'the server closed the connection');
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });

  it('holds a bounded amount when the client opens its window and starts a key re-exchange it never finishes', async (t) => {
    const { pid, login, stillServes } = await victim(t);
    const before = rssOf(pid);
    const conn = await login();
    const ch = await subsystem(conn);
    const handle = await openForRead(ch, '/big.bin');
    conn.on('error', () => undefined);
    // ssh2 holds the server's replies back during the exchange, in its own queue, not in the socket.
    openWide(ch, conn);
    ch.write(reads(handle, 2000, 2 ** 31, 10));
    stallKeyExchange(conn);
    const peak = await peakRss(pid, async () => {
      await sleep(5000);
    });
    (conn as unknown as Internals)._sock.destroy();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
    await stillServes();
  });
  // The CLOSEs a channel received are let finish for up to 2 s after its close (SftpChannel.endSession), with the
  // WRITEs ordered before them. A user whose WRITEs a rate holds back sent them and a CLOSE, then closed the channel,
  // again and again: the budget, given back at the close, let the next channel of the connection fill it at once,
  // and the server held a budget's worth of WRITEs for each channel closed in the last 2 s.
  it('holds a bounded amount for channels closed behind a CLOSE their rate-limited WRITEs hold back', async (t) => {
    const srv = await TestServer.start({
      users: [{ name: 'rita', password: 'rita password', args: ['--rate-up', '64K'] }],
      yaml: 'limits:\n  maxSessionsPerUser: 0\n',
    });
    t.after(() => srv.stop());
    const pid = srv.pid as number;
    const conns = await Promise.all([0, 1].map(() => sshConnect({ port: srv.sftpPort, username: 'rita', password: 'rita password' })));
    for (const conn of conns) conn.on('error', () => undefined);
    const chunk = Buffer.alloc(255 * 1024, 0x61);
    const rounds = (count: number) =>
      Promise.all(
        conns.map(async (conn, n) => {
          for (let round = 0; round < count; round++) {
            const ch = await subsystem(conn);
            const handle = await openForRead(ch, `/c${n}-${round}.bin`, OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT);
            const writes = [];
            for (let i = 0; i < 32; i++) writes.push(new Writer(FXP.WRITE, 10 + i).bytes(handle).uint64(i * chunk.length).bytes(chunk).finish());
            ch.write(Buffer.concat([...writes, new Writer(FXP.CLOSE, 99).bytes(handle).finish()]));
            await sleep(150);
            ch.close();
          }
        }),
      );
    // Warmed up by a round each, its 2 s over, so that the baseline is not the server's first growth.
    await rounds(1);
    await sleep(2500);
    const before = rssOf(pid);
    const peak = await peakRss(pid, async () => void (await rounds(16)));
    for (const conn of conns) conn.end();
    t.diagnostic(`server grew by ${Math.round((peak - before) / MiB)} MiB`);
    assert.ok(peak - before < BOUND, `server grew by ${Math.round((peak - before) / MiB)} MiB`);
  });
});
