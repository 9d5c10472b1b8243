import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { sluice, startServe } from './helpers/cli.js';
import { HaProxy, haproxyMissing } from './helpers/haproxy.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { freePorts, TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';
import { until } from './helpers/probe.js';

/*
 * Two sluice nodes on one real PostgreSQL and one homes directory, behind a
 * real HAProxy balancing SFTP round robin with PROXY v2 from 127.0.0.1 (the
 * trusted proxy). Clients reach the balancer on 127.0.0.5, or a node itself
 * from another loopback address (served directly: proxyProtocol optional).
 */
const BALANCER = '127.0.0.5';
const skip = postgresMissing() ?? haproxyMissing();
if (skip) console.log(`# ${skip}`);

type Sftp = Awaited<ReturnType<typeof sftpOf>>;

async function withSftp<T>(port: number, host: string, from: string, user: string, password: string, fn: (s: Sftp) => Promise<T>): Promise<T> {
  const conn = await sshConnect({ port, host, localAddress: from, username: user, password });
  try {
    return await fn(await sftpOf(conn));
  } finally {
    conn.end();
  }
}

/**
 * Write `data` to `path` over SFTP, once `go` resolves (so that uploads
 * opened on several connections write at the same time); resolves to 'ok'
 * or the server's message.
 */
async function put(s: Sftp, path: string, data: Buffer, go: Promise<void> = Promise.resolve()): Promise<string> {
  try {
    const handle = await call<Buffer>((cb) => s.open(path, 'w', cb));
    await go;
    await call((cb) => s.write(handle, data, 0, data.length, 0, cb));
    await call((cb) => s.close(handle, cb));
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  }
}

/** Does a connection from `from` to `port` get an SSH banner (true) or get closed first (false)? */
function greeted(host: string, port: number, from: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, localAddress: from });
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('SSH-2.0')) {
        socket.destroy();
        resolve(true);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text.includes('SSH-2.0')));
    setTimeout(() => socket.destroy(), 3000);
  });
}


/** The files under their own names in `dir`, with their sizes (not the hidden temporaries of uploads in progress or being removed). */
function filesUnder(dir: string): { name: string; size: number }[] {
  return readdirSync(dir)
    .filter((name) => !name.startsWith('.sluice-upload-'))
    .map((name) => ({ name, size: statSync(join(dir, name)).size }));
}

describe('two nodes on one PostgreSQL behind HAProxy', { skip: skip ?? false, timeout: 240_000 }, () => {
  let db: TestPostgres;
  let a: TestServer;
  let b: TestServer;
  let ha: HaProxy;
  let sftpFront = 0;
  const shared = mkdtempSync(join(tmpdir(), 'sluice-nodes-'));
  const homes = join(shared, 'homes');
  const certs = join(shared, 'certs');
  const env = (node: string, store: string) => ({
    SLUICE_STORE_URL: store,
    SLUICE_NODE_ID: node,
    // One balancer, one host key: both nodes present the same (README "Running several nodes").
    SLUICE_CERTS_DIR: certs,
    SLUICE_TRUSTED_PROXIES: '127.0.0.1',
    SLUICE_SFTP_PROXY_PROTOCOL: 'optional',
    SLUICE_FTP_PROXY_PROTOCOL: 'optional',
  });
  const yaml = 'limits:\n  maxSessionsPerIp: 100\n  maxSessionsPerUser: 100\n';
  const cli = (node: TestServer, args: string[], input?: string) => sluice(node.dir, args, input, node === a ? env('node-a', db.url) : env('node-b', db.url));

  before(async () => {
    mkdirSync(homes, { mode: 0o777 });
    db = await startPostgres();
    a = await TestServer.start({ env: env('node-a', db.url), yaml, users: [{ name: 'alice', password: 'alice-pw-123', args: ['--home', join(homes, 'alice')] }] });
    // One node of each kind: A serves in one process, B with a primary and two workers.
    b = await TestServer.start({ env: { ...env('node-b', db.url), SLUICE_WORKERS: '2' }, yaml });
    [sftpFront] = (await freePorts(1)) as [number];
    ha = await HaProxy.start(BALANCER, [{ name: 'sftp', listen: String(sftpFront), to: [a.sftpPort, b.sftpPort] }]);
  });
  after(async () => {
    await ha?.stop();
    await a?.stop();
    await b?.stop();
    await db?.stop();
    rmSync(shared, { recursive: true, force: true });
  });

  it('a user added through node A logs in on node B', async () => {
    const added = cli(a, ['user', 'add', 'carol', '--password-stdin', '--home', join(homes, 'carol')], 'carol-pw-123\n');
    assert.equal(added.code, 0, added.stderr);
    const listed = await withSftp(b.sftpPort, '127.0.0.1', '127.0.0.9', 'carol', 'carol-pw-123', (s) => call<unknown[]>((cb) => s.readdir('/', cb)));
    assert.deepEqual(listed, []);
    const logins = (await b.auditUntil((r) => r.event === 'login' && r.user === 'carol')).filter((r) => r.event === 'login' && r.user === 'carol');
    assert.equal(logins.length, 1);
    assert.equal(logins[0]?.node, 'node-b');
  });

  it('a home nested in another by hand in the shared store is reported when a node starts', async () => {
    const added = cli(a, ['user', 'add', 'inner', '--password-stdin', '--home', join(homes, 'inner')], 'inner-pw-1234\n');
    assert.equal(added.code, 0, added.stderr);
    const nested = join(homes, 'alice', 'inner');
    mkdirSync(nested, { recursive: true });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      // sluice refuses to make such a home; an edit by hand does not ask.
      await client.query('UPDATE users SET home = $1 WHERE name = $2', [nested, 'inner']);
      await a.restart();
      await a.logs(/home \S+\/alice\/inner of inner lies in \S+\/alice, the home of alice, who can redirect its logins anywhere/);
    } finally {
      await client.query('DELETE FROM users WHERE name = $1', ['inner']);
      await client.end();
    }
  });

  it("a password changed through node A is the one node B's next login checks, though B keeps a copy of the user", async () => {
    const added = cli(a, ['user', 'add', 'erin', '--password-stdin', '--home', join(homes, 'erin')], 'erin-old-pw-1\n');
    assert.equal(added.code, 0, added.stderr);
    // B reads erin once here and logs her in from its copy afterwards.
    for (let i = 0; i < 2; i++) await withSftp(b.sftpPort, '127.0.0.1', '127.0.0.10', 'erin', 'erin-old-pw-1', async () => undefined);
    const changed = cli(a, ['user', 'passwd', 'erin', '--password-stdin'], 'erin-new-pw-2\n');
    assert.equal(changed.code, 0, changed.stderr);
    // B drops its copy at the change's notice (PostgreSQL NOTIFY): milliseconds, but not a fixed 200 ms on a loaded
    // machine. Looked for up to 5 s, far inside the 60 s a copy may otherwise be kept.
    const oldRefused = () =>
      withSftp(b.sftpPort, '127.0.0.1', '127.0.0.10', 'erin', 'erin-old-pw-1', async () => false).catch(() => true);
    assert.ok(await until(5000, oldRefused), 'the old password on B is still taken 5 s after the change');
    await withSftp(b.sftpPort, '127.0.0.1', '127.0.0.10', 'erin', 'erin-new-pw-2', async () => undefined);
    const failed = (await b.auditUntil((r) => r.event === 'login-failed' && r.user === 'erin')).filter((r) => r.event === 'login-failed' && r.user === 'erin');
    assert.deepEqual(failed.map((r) => r.reason), ['bad-password']);
  });

  it('a node that cannot start on the shared store says why and exits (its pool does not keep it alive)', async () => {
    // A user named ftp from before the anonymous names were reserved: made as another, renamed in the store.
    const added = cli(a, ['user', 'add', 'legacyftp', '--password-stdin', '--home', join(homes, 'ftp')], 'ftp-user-pw-1\n');
    assert.equal(added.code, 0, added.stderr);
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    try {
      await sql.query("UPDATE users SET name = 'ftp' WHERE name = 'legacyftp'");
    } finally {
      await sql.end();
    }
    const dir = mkdtempSync(join(shared, 'node-c-'));
    writeFileSync(join(dir, 'sluice.yaml'), `ftp:\n  anonymous:\n    enabled: true\n    root: ${join(shared, 'anon')}\n`);
    const [ftp, ftps, sftp] = (await freePorts(3)) as [number, number, number];
    const c = startServe(dir, { ...env('node-c', db.url), SLUICE_BIND: '127.0.0.1', SLUICE_FTP_PORT: String(ftp), SLUICE_FTPS_PORT: String(ftps), SLUICE_SFTP_PORT: String(sftp), SLUICE_WORKERS: '1' }, /sluice started/);
    c.ready.catch(() => undefined);
    const exited = new Promise<number | null>((resolve) => c.child.once('exit', resolve));
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    if (code === 'hung') {
      // Such a process also ignores its first SIGTERM (the start is waiting for it): kill it.
      c.child.kill('SIGKILL');
      await exited;
    }
    assert.equal(code, 1, c.output().stdout + c.output().stderr);
    assert.match(c.output().stdout, /user "ftp" exists/);
    assert.equal(cli(a, ['user', 'remove', 'ftp']).code, 0);
  });

  it("a user disabled through node B loses its live session on node A at once", async () => {
    const added = cli(a, ['user', 'add', 'dan', '--password-stdin', '--home', join(homes, 'dan')], 'dan-pw-1234\n');
    assert.equal(added.code, 0, added.stderr);
    const conn = await sshConnect({ port: a.sftpPort, localAddress: '127.0.0.7', username: 'dan', password: 'dan-pw-1234' });
    conn.on('error', () => undefined);
    await sftpOf(conn);
    const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
    const disabled = cli(b, ['user', 'disable', 'dan']);
    assert.equal(disabled.code, 0, disabled.stderr);
    const at = Date.now();
    const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 3000))]);
    conn.end();
    assert.equal(outcome, 'closed', 'the session on A went on after the user was disabled through B');
    assert.ok(Date.now() - at < 3000);
    // Written as A ends the session: waited for in the trail, not audit()'s fixed 1.2 s.
    const logout = (await a.auditUntil((r) => r.event === 'logout' && r.user === 'dan')).find((r) => r.event === 'logout' && r.user === 'dan');
    assert.equal(logout?.reason, 'user disabled by an administrator');
  });

  it('a permission taken away or an address refused through one node ends on the other the sessions it concerns, and only those', async () => {
    const added = cli(a, ['user', 'add', 'fay', '--password-stdin', '--perms', 'all', '--home', join(homes, 'fay')], 'fay-pw-12345\n');
    assert.equal(added.code, 0, added.stderr);
    const open = async (from: string, node = a) => {
      const conn = await sshConnect({ port: node.sftpPort, localAddress: from, username: 'fay', password: 'fay-pw-12345' });
      conn.on('error', () => undefined);
      const sftp = await sftpOf(conn);
      const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
      return { conn, sftp, outcome: () => Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), 3000))]) };
    };
    const endings = async () => (await a.audit(0)).filter((r) => r.event === 'logout' && r.user === 'fay').map((r) => `${String(r.ip)} ${String(r.reason)}`);

    // A change that takes nothing away (an override that gives what / gives already) ends nothing.
    const kept = await open('127.0.0.7');
    assert.equal(cli(b, ['user', 'perm', 'fay', '/in', 'all']).code, 0);
    assert.equal(await kept.outcome(), 'open', 'an override that takes nothing away ended the session');

    const narrowed = cli(b, ['user', 'perm', 'fay', '/in', 'list,download']);
    assert.equal(narrowed.code, 0, narrowed.stderr);
    assert.equal(await kept.outcome(), 'closed', 'the session on A kept upload in /in after B took it away');

    // And on B, whose sessions live in its workers: refused there by a change made through A.
    const [near, far, farOnB] = await Promise.all([open('127.0.0.7'), open('127.0.0.8'), open('127.0.0.8', b)]);
    const refused = cli(a, ['user', 'set', 'fay', '--deny-ip', '127.0.0.8/32']);
    assert.equal(refused.code, 0, refused.stderr);
    assert.deepEqual(await Promise.all([near.outcome(), far.outcome(), farOnB.outcome()]), ['open', 'closed', 'closed']);
    // The one left open still serves.
    assert.ok(Array.isArray(await call<unknown[]>((cb) => near.sftp.readdir('/', cb))));
    near.conn.end();
    const expected = ['127.0.0.7 permissions taken away by an administrator', '127.0.0.8 rules changed by an administrator'];
    await until(10_000, async () => {
      const seen = await endings();
      return expected.every((e) => seen.includes(e));
    });
    assert.deepEqual((await endings()).slice(0, 2), expected);
  });

  it('permissions given through one node reach the sessions open before on both, workers included', async () => {
    const added = cli(a, ['user', 'add', 'gil', '--password-stdin', '--perms', 'list,download,upload', '--home', join(homes, 'gil')], 'gil-pw-12345\n');
    assert.equal(added.code, 0, added.stderr);
    const open = async (node: TestServer) => {
      const conn = await sshConnect({ port: node.sftpPort, username: 'gil', password: 'gil-pw-12345' });
      conn.on('error', () => undefined);
      return { conn, sftp: await sftpOf(conn) };
    };
    const [onA, onB] = await Promise.all([open(a), open(b)]);
    const mkdir = (s: typeof onA, path: string) => call((cb) => s.sftp.mkdir(path, cb)).then(() => true, () => false);
    try {
      assert.deepEqual([await mkdir(onA, '/a0'), await mkdir(onB, '/b0')], [false, false], 'mkdir is not given yet');
      // Through A's CLI, which only writes the store (no admin API here): each node's look at the notice renews its own.
      const given = cli(a, ['user', 'set', 'gil', '--perms', 'list,download,upload,mkdir']);
      assert.equal(given.code, 0, given.stderr);
      let n = 0;
      assert.ok(await until(5000, () => mkdir(onA, `/a${++n}`)), 'the session on A did not take the mkdir given');
      assert.ok(await until(5000, () => mkdir(onB, `/b${++n}`)), 'the session in a worker of B did not take the mkdir given');
    } finally {
      onA.conn.end();
      onB.conn.end();
    }
  });

  it('5 failed logins spread over both nodes ban the address on both within 1 s', async () => {
    const from = '127.0.0.2';
    for (let i = 0; i < 5; i++) {
      await assert.rejects(sshConnect({ port: sftpFront, host: BALANCER, localAddress: from, username: 'alice', password: `wrong-${i}` }));
    }
    const fifth = Date.now();
    const failedOn = async (node: TestServer) => (await node.audit(0)).filter((r) => r.event === 'login-failed' && r.ip === from).length;
    // The records reach each node's trail within its next flush (every second, later on a loaded machine): polled for.
    let [onA, onB] = [0, 0];
    await until(10_000, async () => {
      [onA, onB] = [await failedOn(a), await failedOn(b)];
      return onA + onB >= 5;
    });
    assert.ok(onA > 0 && onB > 0, `round robin spread the failures: ${onA} on A, ${onB} on B`);
    assert.equal(onA + onB, 5);
    // Each node itself refuses the address, whichever counted the fifth failure.
    // As long as before the records were polled for: 1 s after a fixed 1.2 s wait from the fifth failure.
    const banWithin = Math.max(1000, fifth + 2200 - Date.now());
    for (const node of [a, b]) assert.ok(await until(banWithin, async () => !(await greeted('127.0.0.1', node.sftpPort, from))), `banned on ${node === a ? 'A' : 'B'}`);
    assert.equal(await greeted(BALANCER, sftpFront, from), false);
    assert.equal(await greeted(BALANCER, sftpFront, from), false);
    assert.equal(await greeted(BALANCER, sftpFront, '127.0.0.6'), true, 'another address is served');
  });

  it('logins under a name no user can have (a NUL byte) are audited and scored: the address is banned', async () => {
    // PostgreSQL's look-up of such a name threw, so the attempts went unaudited and unbanned (found by a review).
    const from = '127.0.0.11';
    for (let i = 0; i < 5; i++) {
      await assert.rejects(sshConnect({ port: a.sftpPort, host: '127.0.0.1', localAddress: from, username: `ali\u0000ce${i}`, password: 'x' }));
    }
    const failed = (await a.audit(0)).filter((r) => r.event === 'login-failed' && r.ip === from);
    assert.deepEqual(failed.map((r) => r.reason), Array(5).fill('bad-name'));
    assert.ok(await until(1000, async () => !(await greeted('127.0.0.1', a.sftpPort, from))), 'banned');
  });

  it("30 concurrent uploads over both nodes keep exactly to the user's byte quota", async () => {
    const added = cli(a, ['user', 'add', 'quota', '--password-stdin', '--home', join(homes, 'quota'), '--quota-bytes', '1000000'], 'quota-pw-123\n');
    assert.equal(added.code, 0, added.stderr);
    const size = 150_000;
    // Every upload opens its file first; all write once all are open, so they are in flight together.
    let opened = 0;
    let allOpen: () => void = () => undefined;
    const go = new Promise<void>((resolve) => (allOpen = resolve));
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        withSftp(sftpFront, BALANCER, '127.0.0.3', 'quota', 'quota-pw-123', async (s) => {
          const started = put(s, `/f${i}`, Buffer.alloc(size, i), go);
          if (++opened === 30) allOpen();
          return started;
        }).catch((e: Error) => {
          // A login that failed must not keep the others waiting (it fails the test below).
          if (++opened === 30) allOpen();
          return `login: ${e.message}`;
        }),
      ),
    );
    const odd = results.filter((r) => r !== 'ok' && r !== 'Quota exceeded');
    if (odd.length > 0) {
      // Only for the failure's message, whatever failed logins there were: a fixed wait, no one record to wait for.
      const failed = [...(await a.audit()), ...(await b.audit(0))].filter((r) => r.event === 'login-failed');
      assert.fail(`${odd.join('; ')}; failed logins: ${JSON.stringify(failed)}`);
    }
    const stored = filesUnder(join(homes, 'quota'));
    const onDisk = stored.reduce((n, f) => n + f.size, 0);
    assert.ok(onDisk <= 1_000_000, `${onDisk} bytes on disk over a 1,000,000-byte quota`);
    assert.equal(results.filter((r) => r === 'ok').length, stored.length, `${results.join(', ')}; on disk: ${stored.map((f) => f.name).join(' ')}`);
    assert.ok(stored.length >= 5, `only ${stored.length} uploads landed: the quota has room for 6`);
    assert.ok(stored.every((f) => f.size === size), 'no partial file under a final name');
    const shown = JSON.parse(cli(b, ['user', 'show', 'quota', '--json']).stdout) as { usedBytes: number; usedFiles: number };
    assert.deepEqual({ bytes: shown.usedBytes, files: shown.usedFiles }, { bytes: onDisk, files: stored.length });
    const servedBy = async (node: TestServer) => (await node.audit(0)).filter((r) => r.event === 'upload' && r.user === 'quota').length;
    // Each node's records reach its trail within its next flush (later on a loaded machine): polled for.
    assert.ok(await until(10_000, async () => (await servedBy(a)) > 0 && (await servedBy(b)) > 0), 'both nodes took uploads');
  });

  it('a file written in place on one node is neither removed, overwritten nor written in place on the other meanwhile', async () => {
    // Each node locked only among its own sessions: a removal on B gave back, over the quota, what A's
    // in-place write had grown and not yet been charged, round after round (found by a review).
    const added = cli(a, ['user', 'add', 'inplace', '--password-stdin', '--home', join(homes, 'inplace'), '--quota-bytes', '100000000'], 'inplace-pw-123\n');
    assert.equal(added.code, 0, added.stderr);
    const login = { localAddress: '127.0.0.7', username: 'inplace', password: 'inplace-pw-123' };
    const [connA, connB] = [await sshConnect({ port: a.sftpPort, ...login }), await sshConnect({ port: b.sftpPort, ...login })];
    try {
      const [sA, sB] = [await sftpOf(connA), await sftpOf(connB)];
      assert.equal(await put(sA, '/x.bin', Buffer.alloc(1 << 20, 1)), 'ok');
      const handle = await call<Buffer>((cb) => sA.open('/x.bin', 'r+', cb));
      await call((cb) => sA.write(handle, Buffer.alloc(4 << 20, 2), 0, 4 << 20, 1 << 20, cb));
      const busy = /being written by another transfer/;
      await assert.rejects(call((cb) => sB.unlink('/x.bin', cb)), busy);
      await assert.rejects(call((cb) => sB.open('/x.bin', 'r+', cb)), busy);
      assert.match(await put(sB, '/x.bin', Buffer.alloc(10, 3)), busy);
      await call((cb) => sA.close(handle, cb));
      // Let go before A answered the close: B may remove it at once. And the 4 MiB A's write grew the file by are
      // in the user's row by then: A frozen from its answer on (a loaded run's late timer, made certain), B's
      // removal takes the whole 5 MiB off. Before (a loaded run found it), A's settle went 50 ms after the lock's
      // delete; B's removal floored the usage at 0 first, A's growth landed after on a file gone: 4 MiB for good.
      const usage = () => JSON.parse(cli(b, ['user', 'show', 'inplace', '--json']).stdout) as { usedBytes: number; usedFiles: number };
      a.signal('SIGSTOP');
      try {
        await call((cb) => sB.unlink('/x.bin', cb));
        // Settles gather for a moment before they are written.
        assert.ok(await until(5000, async () => usage().usedFiles === 0), JSON.stringify(usage()));
      } finally {
        a.signal('SIGCONT');
      }
      // A's statements of the user go in order: once its next upload is counted, any settle it still had is in too.
      assert.equal(await put(sA, '/y.bin', Buffer.alloc(10, 4)), 'ok');
      assert.ok(await until(5000, async () => usage().usedFiles === 1), JSON.stringify(usage()));
      const after = usage();
      assert.deepEqual({ bytes: after.usedBytes, files: after.usedFiles }, { bytes: 10, files: 1 }, 'the usage is what the home holds');
      await call((cb) => sA.unlink('/y.bin', cb));
    } finally {
      connA.end();
      connB.end();
    }
  });

  it('a node killed mid-upload leaves no partial file under the final name; the other keeps serving', async () => {
    const connA = await sshConnect({ port: a.sftpPort, localAddress: '127.0.0.4', username: 'alice', password: 'alice-pw-123' });
    const sA = await sftpOf(connA);
    connA.on('error', () => undefined);
    const handle = await call<Buffer>((cb) => sA.open('/big.bin', 'w', cb));
    await call((cb) => sA.write(handle, Buffer.alloc(1 << 20, 1), 0, 1 << 20, 0, cb));
    await a.kill();
    assert.ok(!readdirSync(join(homes, 'alice')).includes('big.bin'), 'the interrupted upload is not under its name');
    const status = await withSftp(b.sftpPort, '127.0.0.1', '127.0.0.4', 'alice', 'alice-pw-123', (s) => put(s, '/after.bin', Buffer.alloc(4096, 2)));
    assert.equal(status, 'ok');
    assert.equal(statSync(join(homes, 'alice', 'after.bin')).size, 4096);
  });

  it("audit verify accepts both nodes' chains and query shows both in time order", async () => {
    await b.terminate();
    const logs = [join(a.dir, 'data', 'audit.log'), join(b.dir, 'data', 'audit.log')];
    const verified = cli(b, ['audit', 'verify', ...logs]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /node-a/);
    assert.match(verified.stdout, /node-b/);
    const queried = cli(b, ['audit', 'query', '--json', ...logs.flatMap((f) => ['--file', f])]);
    assert.equal(queried.code, 0, queried.stderr);
    const records = queried.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { time: string; node: string });
    assert.deepEqual(new Set(records.map((r) => r.node)), new Set(['node-a', 'node-b']));
    const times = records.map((r) => Date.parse(r.time));
    assert.deepEqual(times, [...times].sort((x, y) => x - y));
  });
});
