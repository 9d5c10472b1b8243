import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';
import { holds, openWide, stallKeyExchange, stallWideOpen, until, type Internals } from './helpers/stall.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS readable');
  return Number(m[1]) * 1024;
}


const ZEROS = Buffer.alloc(64 * 1024);

function isZero(b: Buffer): boolean {
  for (let at = 0; at < b.length; at += ZEROS.length) {
    const part = b.subarray(at, at + ZEROS.length);
    if (!part.equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}

/** The client's side of an `scp -f` exec channel: what it receives waits in `got` until taken. */
class ScpClient {
  got = Buffer.alloc(0);
  /** Bytes skip() let go by, and whether any of them was not zero. */
  private skipped = 0;
  private skipping = 0;
  private notZero = false;
  exit: number | null = null;

  private constructor(readonly channel: ssh2.ClientChannel) {
    channel.on('data', (d: Buffer) => {
      const skip = Math.min(this.skipping, d.length);
      if (!isZero(d.subarray(0, skip))) this.notZero = true;
      this.skipping -= skip;
      this.skipped += skip;
      if (d.length > skip) this.got = Buffer.concat([this.got, d.subarray(skip)]);
    });
    channel.on('exit', (code: number) => (this.exit = code));
  }

  static open(conn: ssh2.Client, command: string): Promise<ScpClient> {
    return new Promise((resolve, reject) => conn.exec(command, (err, ch) => (err ? reject(err) : resolve(new ScpClient(ch)))));
  }

  ok(): void {
    this.channel.write(Buffer.of(0));
  }

  async line(): Promise<string> {
    await until('a line', () => this.got.includes(0x0a));
    const nl = this.got.indexOf(0x0a);
    const line = this.got.subarray(0, nl).toString();
    this.got = this.got.subarray(nl + 1);
    return line;
  }

  async bytes(n: number): Promise<Buffer> {
    await until(`${n} bytes`, () => this.got.length >= n);
    const out = this.got.subarray(0, n);
    this.got = this.got.subarray(n);
    return out;
  }

  /** Let `n` bytes of a sparse file go by: zeros, not kept. */
  async skip(n: number, ms: number): Promise<void> {
    const have = Math.min(n, this.got.length);
    const target = this.skipped + n;
    this.skipped += have;
    if (!isZero(this.got.subarray(0, have))) this.notZero = true;
    this.got = this.got.subarray(have);
    this.skipping = n - have;
    await until(`${n} bytes of file`, () => this.skipped >= target, ms);
    assert.ok(!this.notZero, 'a sparse file arrives as zeros');
  }

  /** A walk of `scp -r -f`, after the client's first OK, to the E of its top directory: the lines it got. */
  async walk(): Promise<string[]> {
    const lines: string[] = [];
    let depth = 0;
    do {
      const line = await this.line();
      lines.push(line);
      if (line.startsWith('C')) {
        this.ok();
        await this.bytes(Number(line.split(' ')[1]) + 1);
      } else if (line.startsWith('D')) depth++;
      else if (line === 'E') depth--;
      if (!line.startsWith('\x01')) this.ok();
    } while (depth > 0);
    return lines;
  }

  /** One file, as `scp -f PATH` sends it, after the client's first OK. */
  async file(): Promise<{ name: string; data: Buffer }> {
    const c = /^C0[0-7]{3} (\d+) (.+)$/.exec(await this.line());
    assert.ok(c, 'a C line');
    this.ok();
    const data = await this.bytes(Number(c[1]));
    assert.deepEqual(await this.bytes(1), Buffer.of(0), 'the file ends with OK');
    this.ok();
    return { name: c[2] as string, data };
  }
}

describe('scp -f to a client that stops reading TCP', () => {
  let srv: TestServer;
  let pid: number;
  const login = () => sshConnect({ port: srv.sftpPort, username: 'mona', password: 'mona password' });
  const BIG = 256 * MiB;

  before(async () => {
    srv = await TestServer.start({
      users: [{ name: 'mona', password: 'mona password', args: ['--perms', 'all'] }],
      yaml: 'sftp:\n  maxQueuedBytes: 2MiB\n',
    });
    pid = srv.pid as number;
    // What one SETSTAT of a size makes without quota: a large file that costs no disk.
    const fd = openSync(join(srv.home('mona'), 'big.bin'), 'w');
    ftruncateSync(fd, BIG);
    closeSync(fd);
    writeFileSync(join(srv.home('mona'), 'small.bin'), randomBytes(3 * MiB));
  });
  after(() => srv.stop());

  it('opens its SSH window wide: the server waits while its socket holds sftp.maxQueuedBytes, then sends it all', async (t) => {
    const conn = await login();
    conn.on('error', () => undefined);
    const before = await warmedRss(conn, pid);

    const internals = conn as unknown as Internals;
    try {
      const scp = await ScpClient.open(conn, 'scp -f /big.bin');
      scp.ok();
      assert.match(await scp.line(), new RegExp(`^C0644 ${BIG} big.bin$`));
      stallWideOpen(scp.channel, conn);
      scp.ok();
      // Before, it read the whole file into its socket: 256 MiB and more.
      await growsLittle(t, pid, before, 20);

      // Read again: what waited goes on to the end of the file.
      internals._sock.resume();
      await scp.skip(BIG, 60_000);
      assert.deepEqual(await scp.bytes(1), Buffer.of(0), 'the file ends with OK');
      scp.ok();
      await until('the exit status', () => scp.exit !== null);
      assert.equal(scp.exit, 0);
      // And a normal download on the same connection, byte-exact.
      const again = await ScpClient.open(conn, 'scp -f /small.bin');
      again.ok();
      const { name, data } = await again.file();
      assert.equal(name, 'small.bin');
      assert.equal(sha256(data), sha256(readFileSync(join(srv.home('mona'), 'small.bin'))));
    } finally {
      // A paused socket with bytes queued at the server would hold its stop for ever.
      internals._sock.destroy();
    }
  });

  it('opens its SSH window wide and starts a key re-exchange it never finishes: the server waits while ssh2 holds sftp.maxQueuedBytes back', async (t) => {
    const conn = await login();
    conn.on('error', () => undefined);
    const before = await warmedRss(conn, pid);
    try {
      const scp = await ScpClient.open(conn, 'scp -f /big.bin');
      scp.ok();
      assert.match(await scp.line(), new RegExp(`^C0644 ${BIG} big.bin$`));
      openWide(scp.channel, conn);
      scp.ok();
      stallKeyExchange(conn);
      // Before, ssh2 queued the whole file while the exchange waited: 256 MiB and more.
      await growsLittle(t, pid, before, 20);
    } finally {
      (conn as unknown as Internals)._sock.destroy();
    }
  });

  it('a file cut short while it is sent: the zeros that make up its announced size wait for the client as its bytes do', async (t) => {
    // Found by an adversarial review: the missing bytes were made in one buffer and written at once, past every
    // wait: a file of 256 MiB emptied by another session after its C line put 256 MiB into the server's socket.
    const path = join(srv.home('mona'), 'shrinks.bin');
    const fd = openSync(path, 'w');
    ftruncateSync(fd, BIG);
    closeSync(fd);
    const conn = await login();
    conn.on('error', () => undefined);
    const before = await warmedRss(conn, pid);
    const internals = conn as unknown as Internals;
    try {
      const scp = await ScpClient.open(conn, 'scp -f /shrinks.bin');
      scp.ok();
      assert.match(await scp.line(), new RegExp(`^C0644 ${BIG} shrinks.bin$`));
      // Opened and announced: emptied now, before the client's OK lets the first byte go.
      const cut = openSync(path, 'r+');
      ftruncateSync(cut, 0);
      closeSync(cut);
      stallWideOpen(scp.channel, conn);
      scp.ok();
      await growsLittle(t, pid, before, 15);
      internals._sock.resume();
      // The client gets the size it was promised, then the warning in place of the OK.
      await scp.skip(BIG, 60_000);
      assert.match((await scp.line()).toString(), /^\x01scp: \/shrinks\.bin: file changed while read$/);
      scp.ok();
      await until('the exit status', () => scp.exit !== null);
      assert.equal(scp.exit, 1);
    } finally {
      internals._sock.destroy();
    }
  });

  it('ten downloads stalled on one connection wait without a listener each on its socket', async () => {
    const conn = await login();
    conn.on('error', () => undefined);
    const internals = conn as unknown as Internals;
    try {
      const runs: ScpClient[] = [];
      for (let i = 0; i < 10; i++) {
        const scp = await ScpClient.open(conn, 'scp -f /big.bin');
        scp.ok();
        assert.match(await scp.line(), new RegExp(`^C0644 ${BIG} big.bin$`));
        runs.push(scp);
      }
      // Stalled only once all are open: a paused socket takes no channel's confirmation.
      for (const scp of runs) {
        stallWideOpen(scp.channel, conn);
        scp.ok();
      }
      await sleep(1000);
      // Each waiter added a 'drain' and a 'close' listener to the connection's socket: Node warned past ten.
      assert.doesNotMatch(srv.stderr, /MaxListenersExceededWarning/);
    } finally {
      internals._sock.destroy();
    }
  });

  // ssh2 completes no write on a channel once it is closing, and emits its 'close' only after the data the client
  // sent has been read, which an SCP run reads only when a reply is due: the run waited for ever to send.
  const stalls = {
    'its SSH window shut': (scp: ScpClient) => {
      // The client's channel stops taking data: past its buffer ssh2 re-opens no window, and the server's write waits.
      scp.channel.pause();
      scp.ok();
    },
    'its socket full': (scp: ScpClient, conn: ssh2.Client) => {
      stallWideOpen(scp.channel, conn);
      scp.ok();
    },
  };
  const cases: [keyof typeof stalls, 'closes the channel' | 'drops the connection'][] = [
    ['its SSH window shut', 'closes the channel'],
    ['its socket full', 'closes the channel'],
    ['its socket full', 'drops the connection'],
  ];
  for (const [stall, end] of cases) {
    it(`a download stalled with ${stall}, whose client ${end}: the run ends, recorded aborted, its file closed, its login logged out with the connection`, async () => {
      const conn = await login();
      conn.on('error', () => undefined);
      const internals = conn as unknown as Internals;
      const port = internals._sock.localPort;
      try {
        const scp = await ScpClient.open(conn, 'scp -f /big.bin');
        scp.ok();
        assert.match(await scp.line(), new RegExp(`^C0644 ${BIG} big.bin$`));
        stalls[stall](scp, conn);
        // Until the server is stuck sending: it read far less than the file.
        await sleep(500);
        assert.ok(holds(pid, 'big.bin'), 'the download is under way');
        if (end === 'closes the channel') scp.channel.close();
        else internals._sock.destroy();
        const records = await srv.auditUntil((r) => r.event === 'download' && r.port === port, 15_000);
        const download = records.find((r) => r.event === 'download' && r.port === port);
        assert.equal(download?.result, 'aborted', JSON.stringify(download));
        assert.equal(download?.reason, 'connection closed');
        assert.ok((download?.bytes as number) < BIG / 2, `${String(download?.bytes)} bytes read`);
        await until('the file closed', () => !holds(pid, 'big.bin'), 5_000);
        // A channel's close ends its session; the login stands until the connection closes, and logs out then (SharedLogin).
        internals._sock.destroy();
        const logout = await srv.auditUntil((r) => r.event === 'logout' && r.port === port, 15_000);
        assert.ok(logout.some((r) => r.event === 'logout' && r.port === port), 'the login logged out');
      } finally {
        internals._sock.destroy();
      }
    });
  }
});

describe('scp -r -f', () => {
  let srv: TestServer;
  let pid: number;
  const login = () => sshConnect({ port: srv.sftpPort, username: 'mona', password: 'mona password' });

  before(async () => {
    srv = await TestServer.start({
      users: [{ name: 'mona', password: 'mona password', args: ['--perms', 'all'] }],
      yaml: 'sftp:\n  maxHandlesPerUser: 8\n',
    });
    pid = srv.pid as number;
    const home = srv.home('mona');
    writeFileSync(join(home, 'small.bin'), randomBytes(64 * 1024));
    // What SYMLINK requests make, a name each and no bytes: many long names.
    mkdirSync(join(home, 'many'));
    for (let i = 0; i < 10_000; i++) symlinkSync('x', join(home, 'many', String(i).padStart(6, '0') + 'n'.repeat(240)));
    let deep = join(home, 'deep');
    for (const level of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']) {
      deep = join(deep, level);
      mkdirSync(deep, { recursive: true });
      writeFileSync(join(deep, 'f.txt'), level);
    }
  });
  after(() => srv.stop());

  it('of a directory of many names, stalled by its client: a run holds no names of its own', async (t) => {
    const conn = await login();
    try {
      conn.on('error', () => undefined);
      const before = await warmedRss(conn, pid);
      const runs: ScpClient[] = [];
      for (let k = 0; k < 6; k++) {
        const scp = await ScpClient.open(conn, 'scp -r -f /many');
        scp.ok();
        assert.match(await scp.line(), /^D0[0-7]{3} 0 many$/);
        runs.push(scp);
      }
      await sleep(500);
      const grown = rssOf(pid) - before;
      t.diagnostic(`6 runs stalled at their D line: server grew by ${(grown / MiB).toFixed(1)} MiB`);
      // Before, each run held its 10,000 names from before its D line to its end: 4-7 MiB a run.
      assert.ok(grown < 12 * MiB, `server grew by ${(grown / MiB).toFixed(1)} MiB`);
      // Answered, a run goes on to its end in name order: each entry a link to nothing, each a warning.
      const first = runs[0] as ScpClient;
      first.ok();
      const warned: string[] = [];
      for (let line = await first.line(); line !== 'E'; line = await first.line()) warned.push(line);
      first.ok();
      assert.equal(warned.length, 10_000);
      assert.match(warned[0] as string, new RegExp(`^\x01scp: /many/000000${'n'.repeat(240)}: `));
      assert.match(warned[9_999] as string, new RegExp(`^\x01scp: /many/009999${'n'.repeat(240)}: `));
      await until('the exit status', () => first.exit !== null);
      assert.equal(first.exit, 1);
      for (const scp of runs.slice(1)) scp.channel.close();
    } finally {
      conn.end();
    }
  });

  it("each open level of the walk counts among the user's open handles; a level past them is refused by name", async () => {
    const conn = await login();
    try {
      const scp = await ScpClient.open(conn, 'scp -r -f /deep');
      scp.ok();
      const lines = await scp.walk();
      await until('the exit status', () => scp.exit !== null);
      // /deep and a-g are the user's 8 handles (maxHandlesPerUser): h is one more, refused, and the walk goes on without it.
      assert.deepEqual(
        lines.filter((l) => l.startsWith('D')).map((l) => l.split(' ')[2]),
        ['deep', 'a', 'b', 'c', 'd', 'e', 'f', 'g'],
      );
      assert.deepEqual(
        lines.filter((l) => l.startsWith('\x01')),
        ['\x01scp: /deep/a/b/c/d/e/f/g/h: Too many open files'],
      );
      assert.equal(lines.filter((l) => l.startsWith('C')).length, 7);
      assert.equal(scp.exit, 1);
    } finally {
      conn.end();
    }
  });
});

/**
 * The server's RSS once it has served a session and a download, so that a
 * baseline is not its start-up growth.
 */
/** Asserts the server's RSS stays within 64 MiB of `before` at each of `looks` looks 150 ms apart. */
async function growsLittle(t: TestContext, pid: number, before: number, looks: number): Promise<void> {
  let peak = before;
  for (let i = 0; i < looks; i++) {
    await sleep(150);
    peak = Math.max(peak, rssOf(pid));
  }
  const grew = `server grew by ${Math.round((peak - before) / MiB)} MiB`;
  t.diagnostic(grew);
  assert.ok(peak - before < 64 * MiB, grew);
}

async function warmedRss(conn: ssh2.Client, pid: number): Promise<number> {
  const warm = await ScpClient.open(conn, 'scp -f /small.bin');
  warm.ok();
  await warm.file();
  await sleep(300);
  return rssOf(pid);
}
