import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest } from './helpers/admin-http.js';
import { BIN, sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { until } from './helpers/probe.js';
import { freePorts } from './helpers/server.js';

/*
 * The data directory's file system full (ENOSPC): the server runs in a user
 * and mount namespace of its own (unshare -Urm, no root needed) with a small
 * tmpfs over its data directory, which the test fills through
 * /proc/<pid>/root. Skipped where unprivileged user namespaces are off.
 *
 * Found by a review: with the disk full, the defender's ban could not be
 * stored (SQLite: database or disk is full, logged 'offence not scored'),
 * and the address's failures had been cleared before the write: nothing
 * banned it, however many passwords it tried, for as long as the disk
 * stayed full (a user without a quota can fill it on purpose).
 */

const ATTACKER = '127.0.0.2';
const PASSWORD = 'alice password';

function namespacesWork(): boolean {
  return spawnSync('unshare', ['-Urm', 'true']).status === 0;
}

/** `sluice serve` on a tmpfs of `size` over its data directory, in namespaces of its own. */
class SmallDiskServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-full-'));
  readonly data = join(this.dir, 'data');
  readonly adminSocket = join(this.dir, 'admin.sock');
  ftpPort = 0;
  private child: ChildProcess | null = null;
  private stdout = '';

  /** `filled`: the tmpfs is filled (dd) between `user add` and `serve`, so the server starts on a full disk. */
  async start(size: string, yaml: string, workers = '1', filled = false): Promise<void> {
    mkdirSync(this.data);
    writeFileSync(join(this.dir, 'sluice.yaml'), yaml);
    const [ftp, ftps, sftp] = await freePorts(3);
    this.ftpPort = ftp as number;
    const base = 20000 + Math.floor(Math.random() * 400) * 100;
    const fill = filled ? '{ dd if=/dev/zero of="$2/filler" bs=64k 2>/dev/null; true; } && ' : '';
    // V8's young generation pinned at Node 20's 16 MiB per semi-space: the memory case below bounds the records
    // held, and Node 24 lets the young generation grow to 64 MiB per semi-space under the same load (its server grew
    // 48.2 MiB there, 25-33 on Node 20), which is V8's sizing, not records.
    const script = `mount -t tmpfs -o size="$1" tmpfs "$2" && printf "%s\\n" "$SLUICE_TEST_PASSWORD" | "$3" "$4" user add alice --password-stdin >/dev/null && ${fill}exec "$3" --max-semi-space-size=16 "$4" serve`;
    this.child = spawn('unshare', ['-Urm', 'sh', '-c', script, 'sh', size, this.data, process.execPath, BIN], {
      cwd: this.dir,
      env: {
        ...process.env,
        SLUICE_TEST_PASSWORD: PASSWORD,
        SLUICE_DATA_DIR: this.data,
        SLUICE_BIND: '127.0.0.1',
        SLUICE_FTP_PORT: String(ftp),
        SLUICE_FTPS_PORT: String(ftps),
        SLUICE_SFTP_PORT: String(sftp),
        SLUICE_PASV_PORTS: `${base}-${base + 99}`,
        SLUICE_FTP_TLS: 'optional',
        SLUICE_WORKERS: workers,
        SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '2',
        // Outside the tmpfs, where the test reaches it.
        SLUICE_ADMIN_LISTEN: this.adminSocket,
      },
    });
    let stderr = '';
    this.child.stdout?.on('data', (d: Buffer) => (this.stdout += d));
    this.child.stderr?.on('data', (d: Buffer) => (stderr += d));
    const child = this.child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start:\n${this.stdout}\n${stderr}`)), 60_000);
      child.stdout?.on('data', () => {
        if (/sluice started/.test(this.stdout)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`serve exited ${code}:\n${this.stdout}\n${stderr}`));
      });
    });
  }

  get log(): string {
    return this.stdout;
  }

  /** The server's resident memory, in bytes. */
  rss(): number {
    const status = readFileSync(`/proc/${this.child?.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
  }

  /** The data directory as the server sees it (its tmpfs), from outside its mount namespace. */
  get seenData(): string {
    return `/proc/${this.child?.pid}/root${this.data}`;
  }

  /** Fill the tmpfs to the last byte. */
  fill(): void {
    const fd = openSync(join(this.seenData, 'filler'), 'w');
    const chunk = Buffer.alloc(64 * 1024);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      closeSync(fd);
    }
    // The last pages too, a byte at a time below a chunk.
    const rest = openSync(join(this.seenData, 'filler-rest'), 'w');
    try {
      for (;;) writeSync(rest, Buffer.alloc(512));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      closeSync(rest);
    }
  }

  /** SIGTERM; resolves to the exit code, or 'running' if it has not exited within `ms`. */
  async terminate(ms: number): Promise<number | null | 'running'> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    return Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), ms))]);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const NO_NAMESPACES = 'unshare -Urm fails here (unprivileged user namespaces off): no small file system to fill';

/** A server on an 8 MiB tmpfs for the enclosing describe's tests (undefined where namespaces do not work), stopped after them. */
function onSmallDisk(yaml: string, workers = '1'): () => SmallDiskServer | undefined {
  let srv: SmallDiskServer | undefined;
  before(async () => {
    if (!namespacesWork()) return;
    srv = new SmallDiskServer();
    await srv.start('8m', yaml, workers);
  });
  after(async () => {
    await srv?.stop();
  });
  return () => srv;
}

for (const workers of ['1', '2']) describe(`the data directory full: the server still defends itself (workers ${workers})`, () => {
  const server = onSmallDisk('auth:\n  failureDelay: 0\n', workers);

  it('failed logins past the threshold get the address banned, though the ban cannot be stored', { timeout: 60_000 }, async (t) => {
    const srv = server();
    if (!srv) return t.skip(NO_NAMESPACES);
    srv.fill();
    for (let i = 0; i < 6; i++) {
      const c = await RawFtp.connect(srv.ftpPort, false, ATTACKER).catch(() => null);
      if (!c) break;
      await c.read();
      // Banned meanwhile: the connection is closed under the login.
      await c.login('alice', `wrong ${i}`).catch(() => null);
      c.close();
    }
    let greeting: number | 'closed' = 220;
    for (const end = Date.now() + 5000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      greeting = await RawFtp.greeting(srv.ftpPort, ATTACKER);
      if (greeting !== 220) break;
    }
    assert.notEqual(greeting, 220, `six failed logins with the disk full: still greeted (${/offence not scored/.test(srv.log) ? 'offence not scored' : 'no ban'})`);
    // Everyone else is served as before.
    const ok = await RawFtp.connect(srv.ftpPort);
    await ok.read();
    assert.equal((await ok.login('alice', PASSWORD)).code, 230);
    ok.close();
    // The held ban is listed and can be lifted, though the store has not taken it (before, it was in
    // neither the API's list nor `sluice ban list`, and lasted until it expired).
    const api = { socketPath: srv.adminSocket };
    const listed = await adminRequest(api, 'GET', '/api/v1/bans');
    assert.equal(listed.status, 200, listed.text);
    assert.equal((listed.json as { address: string; held?: boolean }[]).find((b) => b.address === ATTACKER)?.held, true, `the held ban is not listed: ${listed.text}`);
    const cli = sluice(srv.dir, ['ban', 'list'], '', { SLUICE_ADMIN_LISTEN: srv.adminSocket });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`${ATTACKER.replaceAll('.', '\\.')} .*held: not yet stored`));
    const lifted = await adminRequest(api, 'DELETE', `/api/v1/bans/${ATTACKER}`);
    assert.equal(lifted.status, 200, lifted.text);
    assert.equal(await RawFtp.greeting(srv.ftpPort, ATTACKER), 220, 'the address is still refused after its held ban was lifted');
  });

  // Found by an adversarial review: a held ban was seen at admission only. Connections the address had opened
  // before it went on logging in, the right password included, as if no ban were in force (a stored one
  // refuses them at their next login).
  it('a connection opened before the held ban is refused at its next login, with the right password too', { timeout: 60_000 }, async (t) => {
    const srv = server();
    if (!srv) return t.skip(NO_NAMESPACES);
    srv.fill();
    const from = '127.0.0.4';
    const open: RawFtp[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await RawFtp.connect(srv.ftpPort, false, from);
      assert.equal((await c.read())?.code, 220);
      open.push(c);
    }
    for (const [i, c] of open.slice(0, 5).entries()) await c.login('alice', `wrong ${i}`).catch(() => null);
    assert.equal(await until(5000, async () => (await RawFtp.greeting(srv.ftpPort, from)) !== 220), true, 'five failed logins: still greeted');
    const late = open[5] as RawFtp;
    const reply = await late.login('alice', PASSWORD).catch(() => null);
    assert.notEqual(reply?.code, 230, 'logged in from an address under a held ban');
    for (const c of open) c.close();
    // Lifted for the cases after this one, with room again: the ban may have reached the store after all (the
    // WAL reuses its own pages after a checkpoint), and its removal then needs a write the full disk refused
    // (a clean run's DELETE answered 500). The held ban's lifting is the first case's.
    for (const name of ['filler', 'filler-rest']) rmSync(join(srv.seenData, name), { force: true });
    assert.equal((await adminRequest({ socketPath: srv.adminSocket }, 'DELETE', `/api/v1/bans/${from}`)).status, 200);
  });

  // Found in a clean run: the removal of a stored ban with the disk full answered 500 'internal error', and logged
  // SQLite's error as the server's fault, where the request was sound and went through once there was room.
  it('admin API writes the full disk refuses are answered 503 with Retry-After; nothing is half-written; they go through with room', { timeout: 90_000 }, async (t) => {
    const srv = server();
    if (!srv) return t.skip(NO_NAMESPACES);
    const api = { socketPath: srv.adminSocket };
    for (const name of ['filler', 'filler-rest']) rmSync(join(srv.seenData, name), { force: true });
    const stored = '10.9.0.1';
    assert.equal((await adminRequest(api, 'POST', '/api/v1/bans', { body: { address: stored } })).status, 201);
    srv.fill();
    // The database's log (WAL) takes writes in the room it had until it must grow: ban addresses until one is refused.
    let refused: { address: string; reply: Awaited<ReturnType<typeof adminRequest>> } | null = null;
    for (let i = 0; i < 4000 && refused === null; i++) {
      const address = `10.8.${i >> 8}.${i & 255}`;
      const reply = await adminRequest(api, 'POST', '/api/v1/bans', { body: { address } });
      if (reply.status !== 201) refused = { address, reply };
    }
    assert.ok(refused, '4,000 bans stored on a full disk');
    assert.equal(refused.reply.status, 503, refused.reply.text);
    assert.equal(refused.reply.headers['retry-after'], '5');
    assert.match(refused.reply.text, /the user store cannot be written now \(database or disk is full\); nothing was changed: try again/);
    // A removal needs one page of the log where the refused insert needed more (a split): it may still fit.
    const removal = await adminRequest(api, 'DELETE', `/api/v1/bans/${stored}`);
    assert.ok(removal.status === 503 || removal.status === 200, `${removal.status} ${removal.text}`);
    const listed = (await adminRequest(api, 'GET', '/api/v1/bans')).json as { address: string }[];
    assert.equal(listed.some((b) => b.address === stored), removal.status === 503, `answered ${removal.status}, and the ban is ${listed.some((b) => b.address === stored) ? 'still' : 'not'} listed`);
    assert.ok(!listed.some((b) => b.address === refused.address), 'the refused ban is listed');
    assert.doesNotMatch(srv.log, /"msg":"admin API"/, 'a refused write logged as the server\'s own error');
    for (const name of ['filler', 'filler-rest']) rmSync(join(srv.seenData, name), { force: true });
    if (removal.status === 503) assert.equal((await adminRequest(api, 'DELETE', `/api/v1/bans/${stored}`)).status, 200);
    assert.equal((await adminRequest(api, 'POST', '/api/v1/bans', { body: { address: refused.address } })).status, 201);
  });
});

/*
 * Found by the same review: a server started with its data directory's file
 * system full stopped with a bare 'sluice: disk I/O error' (SQLite's words),
 * naming neither the file nor the cause.
 */
describe('the data directory full at start: the refusal names the file and the cause', () => {
  let srv: SmallDiskServer | undefined;
  after(async () => {
    await srv?.stop();
  });

  it('sluice serve on a full file system', { timeout: 60_000 }, async (t) => {
    if (!namespacesWork()) return t.skip(NO_NAMESPACES);
    srv = new SmallDiskServer();
    const failed = await srv.start('8m', '', '1', true).then(() => null, (err: Error) => err.message);
    assert.ok(failed !== null, 'the server started on a full disk');
    assert.match(failed, /sluice\.db: .*\(SQLITE_\w+\); its file system is full/);
  });
});

/*
 * Found by the same review: with the audit file's file system full, every
 * record the server could not write stayed in its memory and each write
 * retried logged an error line: one user sending 43,000 cheap refused
 * commands (SITE CHMOD without the chmod right, each recorded) over four
 * connections in 4 s grew the server by 40 MiB and wrote 19,000 'audit log'
 * error lines (4.6 MB). Nothing bounded it but the machine's memory, and a
 * server killed for it then cannot start again on the full disk. Now past
 * MAX_UNWRITTEN (8 MiB) the server makes no more records: the sessions end,
 * connections are refused, until the file takes the lines again.
 */
describe('the audit file system full: the server does not hold every unwritten record, nor log each', () => {
  const server = onSmallDisk('');

  it('refused commands recorded with the disk full: sessions end past the bound, memory and the error log stay bounded, service comes back with the room', { timeout: 180_000 }, async (t) => {
    const srv = server();
    if (!srv) return t.skip(NO_NAMESPACES);
    const clients = await Promise.all([0, 1, 2, 3].map(async () => {
      const c = await RawFtp.connect(srv.ftpPort);
      await c.read();
      assert.equal((await c.login('alice', PASSWORD)).code, 230);
      return c;
    }));
    // Admitted before the bound, logged in after it (found by the review of the fix): refused too.
    const waiting = await RawFtp.connect(srv.ftpPort);
    await waiting.read();
    srv.fill();
    const before = srv.rss();
    const errorsBefore = srv.log.split('\n').filter((l) => l.includes('"msg":"audit trail')).length;
    const PER_CLIENT = 40_000;
    const refused = await Promise.all(clients.map(async (c) => {
      let count = 0;
      // Pipelined in batches: each is refused and recorded (denied chmod), until the server ends the session.
      for (let sent = 0; sent < PER_CLIENT; sent += 500) {
        c.send(Array.from({ length: 500 }, (_, i) => `SITE CHMOD 644 /f${sent + i}\r\n`).join(''));
        for (let i = 0; i < 500; i++) {
          const r = await c.read();
          if (r === null) return count;
          if (r.code === 550) count++;
          else assert.equal(r.code, 421, r.text);
        }
      }
      return count;
    }));
    const grown = srv.rss() - before;
    const errors = srv.log.split('\n').filter((l) => l.includes('"msg":"audit trail')).length - errorsBefore;
    const mib = (grown / 1048576).toFixed(1);
    const total = refused.reduce((a, b) => a + b, 0);
    assert.ok(total < 4 * PER_CLIENT, `all ${total} commands answered: the sessions were not ended`);
    // The sessions end as the line is written; it reaches this end of the pipe a moment after (seen in CI).
    await until(5_000, async () => /live sessions ended, connections refused/.test(srv.log));
    assert.match(srv.log, /live sessions ended, connections refused/);
    assert.ok(errors <= 50, `${errors} 'audit trail' error lines for ${total} records`);
    // Unbounded, 160,000 records held grew it by about 110 MiB (56 for 80,000); bounded, 25-33 here.
    assert.ok(grown < 48 * 1024 * 1024, `the server grew by ${mib} MiB holding unwritten records`);
    // Refused while the lines wait; a login again once the file system has room.
    assert.notEqual((await waiting.login('alice', PASSWORD).catch(() => null))?.code, 230, 'a connection admitted before the bound logged in after it');
    waiting.close();
    const refusedNow = await RawFtp.connect(srv.ftpPort);
    assert.equal((await refusedNow.read())?.code, 421);
    refusedNow.close();
    rmSync(join(srv.seenData, 'filler'));
    let code = 0;
    for (const end = Date.now() + 15_000; Date.now() < end && code !== 230; await new Promise((r) => setTimeout(r, 300))) {
      const c = await RawFtp.connect(srv.ftpPort);
      if ((await c.read())?.code === 220) code = (await c.login('alice', PASSWORD)).code;
      c.close();
    }
    assert.equal(code, 230, 'no login once the disk had room again');
    assert.match(srv.log, /audit trail written again/);
  });
});

/*
 * Found by the review of the fixes above: a size rotation (or a SIGHUP after
 * logrotate) while the disk was full let go of a file whose writes had
 * failed; sonic-boom tries a failed write again only when written to, so its
 * end never came. The switch, every later rotation and the stop behind it
 * waited for ever, and that file's last lines were never written. Now no
 * file is let go of while its writes fail: the rotation waits for them.
 */
describe('the audit file system full when a rotation is due: nothing waits for ever, nothing is lost', () => {
  const server = onSmallDisk('audit:\n  rotateSize: 1M\n');

  it('a rotation due with the disk full comes once it has room; the chain verifies and a stop ends the process', { timeout: 90_000 }, async (t) => {
    const srv = server();
    if (!srv) return t.skip(NO_NAMESPACES);
    const c = await RawFtp.connect(srv.ftpPort);
    await c.read();
    assert.equal((await c.login('alice', PASSWORD)).code, 230);
    srv.fill();
    // About 3 MB of records the disk cannot take: past rotateSize, under the backlog's bound.
    for (let sent = 0; sent < 10_000; sent += 500) {
      c.send(Array.from({ length: 500 }, (_, i) => `SITE CHMOD 644 /f${sent + i}\r\n`).join(''));
      for (let i = 0; i < 500; i++) assert.equal((await c.read())?.code, 550);
    }
    rmSync(join(srv.seenData, 'filler'));
    for (const end = Date.now() + 15_000; Date.now() < end && !/written again/.test(srv.log); ) await new Promise((r) => setTimeout(r, 200));
    assert.match(srv.log, /written again/);
    assert.equal((await c.cmd('NOOP')).code, 200);
    c.close();
    // Every line on disk by now (a timed flush a second), rotated files and all.
    await new Promise((r) => setTimeout(r, 2500));
    const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify'], { cwd: srv.dir, env: { ...process.env, SLUICE_DATA_DIR: srv.seenData, SLUICE_LOG_LEVEL: 'warn' }, encoding: 'utf8' });
    assert.equal(verify.status, 0, `audit verify: ${verify.stdout}${verify.stderr}`);
    assert.match(verify.stdout, /chain intact/);
    assert.notEqual(await srv.terminate(20_000), 'running', 'the server still runs 20 s after SIGTERM');
  });
});

/*
 * Found by the same review: SIGTERM with the audit file's file system full
 * never ended the process. The trail's close waited for its last lines to
 * be written (they could not be), then rejected on the write's error, which
 * skipped stopping the SQLite checkpointer's thread: 'sluice: ENOSPC: no
 * space left on device, write' on stderr, the ports closed, and the process
 * alive until SIGKILL.
 */
describe('the audit file system full: a stop still ends the process', () => {
  const server = onSmallDisk('');

  it('SIGTERM with records that cannot be written exits within the drain', { timeout: 60_000 }, async (t) => {
    const srv = server();
    if (!srv) return t.skip(NO_NAMESPACES);
    srv.fill();
    // A login too: its last-login time cannot be stored either.
    const c = await RawFtp.connect(srv.ftpPort);
    await c.read();
    assert.equal((await c.login('alice', PASSWORD)).code, 230);
    // Enough that the unwritten records are megabytes, as in the review's run: 20,000 or so, when the
    // server ends the session (MAX_UNWRITTEN).
    send: for (let sent = 0; sent < 40_000; sent += 500) {
      c.send(Array.from({ length: 500 }, (_, i) => `SITE CHMOD 644 /f${sent + i}\r\n`).join(''));
      for (let i = 0; i < 500; i++) {
        const r = await c.read();
        if (r === null) break send;
        if (r.code !== 421) assert.equal(r.code, 550, r.text);
      }
    }
    c.close();
    const ended = await srv.terminate(20_000);
    assert.notEqual(ended, 'running', 'the server still runs 20 s after SIGTERM');
    assert.match(srv.log, /lines not written/, 'what was lost is said');
  });
});
