import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { adminRequest, type AdminReply, type AdminTarget } from './helpers/admin-http.js';
import { sluice } from './helpers/cli.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { until } from './helpers/probe.js';
import { freePort, TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * Two real nodes on one real PostgreSQL; node A is frozen (SIGSTOP) in the
 * middle of a change of a user, holding the user's row. The hold timeout
 * (storeHoldTimeout, src/store/postgres/connection.ts) is shortened to keep
 * the case short.
 */
const skip = postgresMissing();
if (skip) console.log(`# ${skip}`);

const HOLD_S = 2;
/** What B's requests get before they count as hanging: the holder's end, with room for a loaded machine. */
const DEADLINE_MS = HOLD_S * 1000 + 6_000;

type Sftp = Awaited<ReturnType<typeof sftpOf>>;

/** Write `size` bytes to `path` in one SFTP file: 'ok', or the server's status code and message. */
async function put(s: Sftp, path: string, size: number): Promise<string> {
  try {
    const handle = await call<Buffer>((cb) => s.open(path, 'w', cb));
    try {
      await call((cb) => s.write(handle, Buffer.alloc(size, 7), 0, size, 0, cb));
    } finally {
      await call((cb) => s.close(handle, cb));
    }
    return 'ok';
  } catch (err) {
    return `${String((err as { code?: unknown }).code)} ${(err as Error).message}`;
  }
}

/** `p`'s value with the ms it took, or 'still waiting' after `ms`. */
async function timed<T>(p: Promise<T>, ms: number): Promise<{ value: T | 'still waiting'; ms: number }> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), ms)));
  try {
    return { value: await Promise.race([p, late]), ms: Date.now() - start };
  } finally {
    clearTimeout(timer);
  }
}

describe('a node frozen while it holds a user’s row in PostgreSQL', { skip: skip ?? false, timeout: 120_000 }, () => {
  let db: TestPostgres;
  let a: TestServer;
  let b: TestServer;
  let apiA: AdminTarget;
  let apiB: AdminTarget;
  let token = '';
  const shared = mkdtempSync(join(tmpdir(), 'sluice-pgfrozen-'));
  const home = join(shared, 'homes', 'gus');
  const env = (node: string) => ({
    SLUICE_STORE_URL: db.url,
    SLUICE_STORE_HOLD_TIMEOUT: String(HOLD_S),
    SLUICE_NODE_ID: node,
    SLUICE_CERTS_DIR: join(shared, 'certs'),
  });
  const request = (api: AdminTarget, method: string, body?: unknown): Promise<AdminReply> =>
    adminRequest(api, method, '/api/v1/users/gus', body === undefined ? { token } : { token, body });
  const sql = async <T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query<T>(text, values)).rows;
    } finally {
      await c.end();
    }
  };
  const login = async (node: TestServer) => {
    const conn = await sshConnect({ port: node.sftpPort, localAddress: '127.0.0.70', username: 'gus', password: 'gus-secret-1' });
    return { conn, sftp: await sftpOf(conn) };
  };

  before(async () => {
    mkdirSync(join(shared, 'homes'), { mode: 0o777 });
    db = await startPostgres();
    apiA = { port: await freePort(), from: '127.0.0.71' };
    apiB = { port: await freePort(), from: '127.0.0.72' };
    a = await TestServer.start({ env: { ...env('node-a'), SLUICE_ADMIN_LISTEN: `127.0.0.1:${apiA.port}` } });
    b = await TestServer.start({ env: { ...env('node-b'), SLUICE_ADMIN_LISTEN: `127.0.0.1:${apiB.port}` } });
    const made = sluice(b.dir, ['admin', 'token', 'create', 'ops'], undefined, env('node-b'));
    assert.equal(made.code, 0, made.stderr);
    token = made.stdout.trim();
  });
  after(async () => {
    a?.signal('SIGCONT');
    await a?.stop();
    await b?.stop();
    await db?.stop();
    rmSync(shared, { recursive: true, force: true });
  });

  it("PostgreSQL ends the frozen node's transaction: the other node's upload and change of the user go through, the resumed node serves, the usage is exact", async (t) => {
    const created = await adminRequest(apiB, 'POST', '/api/v1/users', { token, body: { name: 'gus', password: 'gus-secret-1', home, quotaBytes: 1_000_000 } });
    assert.equal(created.status, 201, created.text);
    // A takes a lease of the user's quota before it freezes, so that its view of what it holds is put to the test.
    const onA = await login(a);
    assert.equal(await put(onA.sftp, '/before.bin', 10_000), 'ok');
    // B's session is open before the freeze: what waits below is the upload's grant of quota, not the login.
    const onB = await login(b);

    // A's change of the user is made to wait for the row, so that A can be stopped while its statement is
    // out; let go, the row is A's, answered to a process that does not run: idle in a transaction.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    await holder.query("BEGIN; SELECT id FROM users WHERE name = 'gus' FOR UPDATE");
    const patchA = request(apiA, 'PATCH', { quotaBytes: 2_000_000 });
    let frozen = 0;
    assert.ok(await until(5_000, async () => {
      const rows = await sql<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND pid <> $1", [holderPid]);
      frozen = rows[0]?.pid ?? 0;
      return frozen !== 0;
    }), "A's change of the user waits for the row");
    a.signal('SIGSTOP');
    try {
      await holder.query('ROLLBACK');
      await holder.end();
      assert.ok(await until(3_000, async () =>
        (await sql("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction'", [frozen])).length === 1),
      'the frozen node holds the row, idle in its transaction');
      const stoppedAt = Date.now();

      const [upload, patchB] = await Promise.all([
        timed(put(onB.sftp, '/during.bin', 20_000), DEADLINE_MS),
        timed(request(apiB, 'PATCH', { quotaBytes: 3_000_000 }), DEADLINE_MS),
      ]);
      assert.notEqual(upload.value, 'still waiting', `B's upload of the user still waits ${DEADLINE_MS} ms after A froze holding the row`);
      assert.equal(upload.value, 'ok');
      assert.notEqual(patchB.value, 'still waiting', `B's change of the user still waits ${DEADLINE_MS} ms after A froze holding the row`);
      assert.equal((patchB.value as AdminReply).status, 200, (patchB.value as AdminReply).text);
      const waited = Date.now() - stoppedAt;
      assert.ok(waited >= HOLD_S * 1000 - 500, `B waited for the holder's end (${waited} ms)`);
      t.diagnostic(`B's upload and change of the user answered ${upload.ms} and ${patchB.ms} ms after A froze holding the row`);
      assert.deepEqual(await sql('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [frozen]), [], "PostgreSQL ended the frozen node's session");
    } finally {
      a.signal('SIGCONT');
    }

    // A's change never committed, and its answer says so; A's next ones are served.
    const late = await patchA;
    assert.equal(late.status, 503, late.text);
    assert.equal(await put(onA.sftp, '/after.bin', 5_000), 'ok');
    const again = await request(apiA, 'PATCH', { quotaBytes: 4_000_000 });
    assert.equal(again.status, 200, again.text);
    onA.conn.end();
    onB.conn.end();

    // What is stored is exact: every upload counted once, as on disk, and no node holds a lease it lost.
    const disk = readdirSync(home).reduce((n, f) => n + statSync(join(home, f)).size, 0);
    assert.equal(disk, 35_000);
    const stored = async () => (await sql<{ quota_bytes: string; used_bytes: string; held_bytes: string; holds: string }>(
      `SELECT quota_bytes::text, used_bytes::text, held_bytes::text,
        (SELECT coalesce(sum(bytes), 0)::text FROM quota_holds h WHERE h.user_id = u.id) AS holds FROM users u WHERE name = 'gus'`))[0];
    assert.ok(await until(10_000, async () => {
      const s = await stored();
      return s?.used_bytes === String(disk) && s.held_bytes === '0' && s.holds === '0';
    }), `usage and holds settle exactly: ${JSON.stringify(await stored())}`);
    assert.equal((await stored())?.quota_bytes, '4000000');
  });
});
