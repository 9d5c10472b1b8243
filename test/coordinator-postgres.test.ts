// What several nodes count together on one PostgreSQL: each user's quota
// (leases per node), the defender's offences per address, logged-in sessions
// per user. Each node is a separate Pool with its own node id, as two sluice
// processes would be; the ledgers are the same QuotaBook the server uses.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Account } from '../src/session/account.js';
import { SluiceError } from '../src/session/errors.js';
import { QuotaBook, type Ledger } from '../src/session/quota.js';
import { loadMigrations, migrationsDir } from '../src/store/migrations.js';
import { clientConfig } from '../src/store/postgres/connection.js';
import { PostgresFailureTally } from '../src/store/postgres/failures.js';
import { migrate } from '../src/store/postgres/migrate.js';
import { PostgresQuota } from '../src/store/postgres/quota.js';
import { endUserSessionsEverywhere } from '../src/store/postgres/session-ends.js';
import { PostgresUserSessions } from '../src/store/postgres/user-sessions.js';
import { PostgresWriteLocks } from '../src/store/postgres/write-locks.js';
import { LastLogins } from '../src/store/postgres/last-logins.js';
import { UserCache } from '../src/store/postgres/user-cache.js';
import { PostgresUsers } from '../src/store/postgres/users.js';
import { WriteTurns } from '../src/store/postgres/write-turns.js';
import { postgresMissing, startPostgres, unexpected, type TestPostgres } from './helpers/postgres.js';

const overQuota = (e: unknown) => e instanceof SluiceError && e.kind === 'quota-exceeded';

describe('coordination across nodes on PostgreSQL', { skip: postgresMissing() ?? false }, () => {
  let server: TestPostgres;
  const pools: pg.Pool[] = [];
  before(async () => (server = await startPostgres()));
  afterEach(() => Promise.all(pools.splice(0).map((p) => p.end())));
  after(() => server?.stop());

  /**
   * A fresh database, migrated up to `upTo` (all of them by default), and `n` pools on it: one per node,
   * with the server settings `options[i]` (libpq's options) for node i's connections.
   */
  async function database(n: number, { upTo = Infinity, options = [] }: { upTo?: number; options?: string[] } = {}): Promise<pg.Pool[]> {
    const url = await server.createDatabase();
    const client = new pg.Client(clientConfig(url));
    await client.connect();
    try {
      await migrate(client, loadMigrations(migrationsDir('postgres')).filter((m) => m.version <= upTo));
    } finally {
      await client.end();
    }
    const made = Array.from({ length: n }, (_, i) => new pg.Pool({ ...clientConfig(url), options: options[i] }));
    pools.push(...made);
    // Connections made up front: the statements of a test then run at once, not one login apart.
    await Promise.all(made.map(async (pool) => {
      const clients = await Promise.all(Array.from({ length: 8 }, () => pool.connect()));
      for (const c of clients) c.release();
    }));
    return made;
  }

  async function addUser(pool: pg.Pool, name: string, quotaBytes: number, quotaFiles = 0): Promise<Account> {
    const { rows } = await pool.query<{ id: number }>(
      `INSERT INTO users (name, home, protocols, permissions, quota_bytes, quota_files, created_at, updated_at)
       VALUES ($1, '/nonexistent', 'sftp', '', $2, $3, 0, 0) RETURNING id`, [name, quotaBytes, quotaFiles]);
    const id = rows[0]!.id;
    return { id, name, home: '/nonexistent', permissions: { root: new Set(), dirs: new Map() }, quotaBytes, quotaFiles, rateUp: null, rateDown: null, scan: null, requireTls: false, revision: 0, readAt: 0, method: 'password', key: null, passwordMark: null };
  }

  async function counters(pool: pg.Pool, id: number) {
    const { rows } = await pool.query('SELECT used_bytes, used_files, held_bytes, held_files FROM users WHERE id = $1', [id]);
    return rows[0] as { used_bytes: number; used_files: number; held_bytes: number; held_files: number };
  }

  /**
   * One atomic upload of `size` bytes, as a transfer drives its ledger:
   * a name slot at the start, the bytes reserved chunk by chunk, the commit
   * check, the settle. Resolves to the bytes that landed (0: refused).
   */
  async function upload(ledger: Ledger, size: number): Promise<number> {
    let reserved = 0;
    try {
      await ledger.checkStart({ createsFile: true, credit: 0, claim: null, lock: null });
      for (let at = 0; at < size; at += 250) {
        const chunk = Math.min(250, size - at);
        await ledger.reserve(chunk, 0);
        reserved += chunk;
        // Other uploads' chunks come in between, on this node and the other.
        await new Promise((r) => setImmediate(r));
      }
      await ledger.checkCommit(reserved, size, 0, false);
    } catch (err) {
      assert.ok(overQuota(err), String(err));
      ledger.settle(reserved, 0, 0);
      ledger.releaseFile();
      return 0;
    }
    ledger.settle(reserved, size, 1);
    ledger.releaseFile();
    return size;
  }

  it('30 concurrent uploads of one user over two nodes stay within the byte quota, and used is what landed', async () => {
    const [a, b] = await database(2);
    const account = await addUser(a!, 'q30', 20_000);
    const rooms = [await PostgresQuota.start(a!, 'node-a', unexpected), await PostgresQuota.start(b!, 'node-b', unexpected)];
    const books = rooms.map((r) => new QuotaBook(r));
    const ledgers = await Promise.all(books.map((book) => book.acquire(account)));
    // 30 uploads of 1000..1900 bytes (43 500 in all): only some fit in 20 000.
    const sizes = Array.from({ length: 30 }, (_, i) => 1000 + (i % 10) * 100);
    const landed = await Promise.all(sizes.map((size, i) => upload(ledgers[i % 2]!, size)));
    const total = landed.reduce((x, y) => x + y, 0);
    const fitted = landed.filter((n) => n > 0).length;
    assert.ok(total <= 20_000, `${total} bytes landed, over the quota`);
    // How many fit depends on how the chunks interleave (each one's reservation counts for all): some, never all.
    assert.ok(fitted > 0 && fitted < 30, `${fitted} uploads fitted`);
    for (const l of ledgers) l.release();
    await Promise.all(rooms.map((r) => r.stop()));
    const c = await counters(a!, account.id);
    assert.equal(c.used_bytes, total, 'used_bytes is the sum of what landed');
    assert.equal(c.used_files, fitted);
    assert.deepEqual([c.held_bytes, c.held_files], [0, 0]);
  });

  it('names too: 30 concurrent new files over two nodes, a file quota of 12, exactly 12 land', async () => {
    const [a, b] = await database(2);
    const account = await addUser(a!, 'f30', 0, 12);
    const rooms = [await PostgresQuota.start(a!, 'node-a', unexpected), await PostgresQuota.start(b!, 'node-b', unexpected)];
    const ledgers = await Promise.all(rooms.map((r) => new QuotaBook(r).acquire(account)));
    const made = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      const ledger = ledgers[i % 2]!;
      try {
        await ledger.holdFile();
      } catch (err) {
        assert.ok(overQuota(err), String(err));
        return false;
      }
      await new Promise((r) => setImmediate(r));
      ledger.settle(0, 10, 1);
      ledger.releaseFile();
      return true;
    }));
    assert.equal(made.filter(Boolean).length, 12);
    for (const l of ledgers) l.release();
    await Promise.all(rooms.map((r) => r.stop()));
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 120, used_files: 12, held_bytes: 0, held_files: 0 });
  });

  it('an overwrite at the full quota is credited with what it replaces, and a new file on the other node is not', async () => {
    const [a, b] = await database(2);
    const account = await addUser(a!, 'ow', 1000);
    const rooms = [await PostgresQuota.start(a!, 'node-a', unexpected), await PostgresQuota.start(b!, 'node-b', unexpected)];
    const [la, lb] = await Promise.all(rooms.map((r) => new QuotaBook(r).acquire(account)));
    assert.equal(await upload(la!, 1000), 1000);
    assert.equal(await la!.checkStart({ createsFile: false, credit: 1000, claim: 'dev:1', lock: null }), true);
    await la!.reserve(800, 1000);
    await assert.rejects(lb!.reserve(100, 0), overQuota, 'the full quota has no room for a new file');
    await la!.checkCommit(800, 800, 1000, false);
    la!.settle(800, -200, 0);
    la!.unclaim('dev:1');
    la!.release();
    // The release's drop of node a's lease is among what settled() waits for.
    await rooms[0]!.settled();
    assert.deepEqual((await a!.query("SELECT node_id FROM quota_holds WHERE node_id = 'node-a'")).rows, []);
    assert.equal(await upload(lb!, 200), 200, 'what the overwrite freed is room on the other node');
    lb!.release();
    await Promise.all(rooms.map((r) => r.stop()));
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 1000, used_files: 2, held_bytes: 0, held_files: 0 });
  });

  it('a user without a quota: every upload on either node lands and is counted', async () => {
    const [a, b] = await database(2);
    const account = await addUser(a!, 'free', 0);
    const rooms = [await PostgresQuota.start(a!, 'node-a', unexpected), await PostgresQuota.start(b!, 'node-b', unexpected)];
    const ledgers = await Promise.all(rooms.map((r) => new QuotaBook(r).acquire(account)));
    const landed = await Promise.all(Array.from({ length: 10 }, (_, i) => upload(ledgers[i % 2]!, 700)));
    assert.deepEqual(landed, Array(10).fill(700));
    for (const l of ledgers) l.release();
    await Promise.all(rooms.map((r) => r.stop()));
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 7000, used_files: 10, held_bytes: 0, held_files: 0 });
  });

  it("one user's small uploads one after another are counted in few statements, and exactly", async () => {
    const [a] = await database(1);
    const account = await addUser(a!, 'many', 0);
    // Every statement that changes users' counters, counted by the database itself.
    await a!.query(`CREATE TABLE counted (n integer NOT NULL); INSERT INTO counted VALUES (0);
      CREATE FUNCTION count_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE counted SET n = n + 1; RETURN NULL; END $$;
      CREATE TRIGGER counting AFTER UPDATE OF used_bytes ON users FOR EACH STATEMENT EXECUTE FUNCTION count_it();`);
    const room = await PostgresQuota.start(a!, 'node-a', unexpected);
    const ledger = await new QuotaBook(room).acquire(account);
    // 20 uploads 2 ms apart, each settled as it ends: a statement each before they were gathered.
    for (let i = 0; i < 20; i++) {
      assert.equal(await upload(ledger, 100), 100);
      await new Promise((r) => setTimeout(r, 2));
    }
    ledger.release();
    await room.stop();
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 2000, used_files: 20, held_bytes: 0, held_files: 0 });
    const statements = (await a!.query<{ n: number }>('SELECT n FROM counted')).rows[0]!.n;
    assert.ok(statements <= 5, `${statements} statements for 20 uploads`);
  });

  it('an upload that ends while the node stops is counted, and takes nothing off the holds twice', async () => {
    const [a] = await database(1);
    const account = await addUser(a!, 'late', 1000);
    const room = await PostgresQuota.start(a!, 'node-a', unexpected);
    const ledger = await new QuotaBook(room).acquire(account);
    await ledger.reserve(300, 0);
    const stopping = room.stop();
    // Ends after stop() began: its settle would land after the drop of the whole hold.
    ledger.settle(300, 300, 1);
    await stopping;
    await room.settled();
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 300, used_files: 1, held_bytes: 0, held_files: 0 });
  });

  it('a node that died keeps its lease from the others until it starts again, which gives it back', async () => {
    const [a, b, restarted] = await database(3);
    const account = await addUser(a!, 'stale', 1000);
    const dying = new QuotaBook(await PostgresQuota.start(a!, 'node-a', unexpected));
    const other = await PostgresQuota.start(b!, 'node-b', unexpected);
    const lb = await new QuotaBook(other).acquire(account);
    await lb.reserve(100, 0);
    // Node a reserves 800 and dies: no settle, no release, no stop.
    await (await dying.acquire(account)).reserve(800, 0);
    const held = await counters(b!, account.id);
    assert.ok(held.held_bytes >= 900, `held ${held.held_bytes}`);
    await assert.rejects(lb.reserve(200, 0), overQuota, 'the dead node holds its lease');
    await PostgresQuota.start(restarted!, 'node-a', unexpected);
    const { rows } = await b!.query('SELECT node_id FROM quota_holds');
    assert.deepEqual(rows, [{ node_id: 'node-b' }], "node a's hold is gone, node b's kept");
    await lb.reserve(200, 0);
    lb.settle(300, 300, 1);
    lb.release();
    await other.stop();
    assert.deepEqual(await counters(b!, account.id), { used_bytes: 300, used_files: 1, held_bytes: 0, held_files: 0 });
  });

  it("a quota changed while the user's ledger is open: the next login's limits hold on that node, and its lease follows them", async () => {
    const [a, b] = await database(2);
    const account = await addUser(a!, 'changed', 0);
    const rooms = [await PostgresQuota.start(a!, 'node-a', unexpected), await PostgresQuota.start(b!, 'node-b', unexpected)];
    const [bookA, bookB] = rooms.map((r) => new QuotaBook(r)) as [QuotaBook, QuotaBook];
    const first = await bookA.acquire(account);
    // Without a quota nothing is held: 600 bytes in flight, unchecked.
    await first.reserve(600, 0);
    // As an administrator sets it; a login then reads it.
    let revision = account.revision;
    const setQuota = async (quotaBytes: number): Promise<Account> => {
      await a!.query('UPDATE users SET quota_bytes = $2 WHERE id = $1', [account.id, quotaBytes]);
      return { ...account, quotaBytes, revision: ++revision };
    };
    const limited = await setQuota(1000);
    const second = await bookA.acquire(limited);
    // A login that read the user before the change, and comes after: it lifts nothing.
    (await bookA.acquire(account)).release();
    // The 600 in flight count: 500 more do not fit, on either session of node a.
    await assert.rejects(second.reserve(500, 0), overQuota);
    await assert.rejects(first.reserve(500, 0), overQuota);
    await second.reserve(300, 0);
    assert.ok((await counters(a!, account.id)).held_bytes >= 900, 'the lease now covers what was in flight');
    // Node b sees the same quota: node a's lease leaves it at most 100.
    const onB = await bookB.acquire(limited);
    await assert.rejects(onB.reserve(200, 0), overQuota);
    first.settle(600, 600, 1);
    second.settle(300, 0, 0);
    // The quota lowered: node a gives back what it held beyond what is in flight.
    const lowered = await bookA.acquire(await setQuota(700));
    await rooms[0]!.settled();
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 600, used_files: 1, held_bytes: 0, held_files: 0 });
    await onB.reserve(100, 0);
    await assert.rejects(lowered.reserve(1, 0), overQuota, 'node b holds the last 100');
    onB.settle(100, 0, 0);
    // The quota gone: every session of node a goes on unchecked, and node a holds nothing.
    const free = await bookA.acquire(await setQuota(0));
    await first.reserve(5000, 0);
    first.settle(5000, 5000, 1);
    await rooms[0]!.settled();
    const c = await counters(a!, account.id);
    assert.deepEqual([c.used_bytes, c.used_files], [5600, 2]);
    for (const l of [first, second, lowered, free, onB]) l.release();
    await Promise.all(rooms.map((r) => r.stop()));
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 5600, used_files: 2, held_bytes: 0, held_files: 0 });
  });

  it('offences counted on two nodes at once add up to five', async () => {
    const [a, b] = await database(2);
    const tallies = [new PostgresFailureTally(a!), new PostgresFailureTally(b!)];
    const now = Date.now();
    const counts = await Promise.all(Array.from({ length: 5 }, (_, i) => tallies[i % 2]!.add('192.0.2.7', now + i, now - 600_000)));
    assert.deepEqual(counts.sort((x, y) => x - y), [1, 2, 3, 4, 5]);
    assert.equal(await tallies[0]!.add('192.0.2.8', now, now - 600_000), 1, 'another address counts apart');
    await tallies[1]!.clear('192.0.2.7');
    assert.equal(await tallies[0]!.add('192.0.2.7', now + 10, now - 600_000), 1, 'cleared: counting starts again');
  });

  it('offences older than the window are not counted, and addresses that stopped offending are pruned', async () => {
    const [a, b] = await database(2);
    const early = 1_000_000;
    await new PostgresFailureTally(a!).add('192.0.2.1', early, early - 600_000);
    await new PostgresFailureTally(a!).add('192.0.2.2', early, early - 600_000);
    const later = early + 700_000;
    // A fresh tally prunes at its first offence: 192.0.2.1's row goes, 192.0.2.2's old time is dropped from its row.
    assert.equal(await new PostgresFailureTally(b!).add('192.0.2.2', later, later - 600_000), 1);
    const { rows } = await a!.query('SELECT address, times FROM offences ORDER BY address');
    assert.deepEqual(rows, [{ address: '192.0.2.2', times: [String(later)] }]);
  });

  it('an offence is counted though the prune after it fails, and the prune is tried again 5 s later, with a warning', async () => {
    const [a] = await database(1);
    await a!.query('INSERT INTO offences (address, times, last_at) VALUES ($1, $2, $3)', ['192.0.2.5', [1_000_000], 1_000_000]);
    // A prune PostgreSQL refuses (a statement timeout or a lost connection would do the same to the statement).
    await a!.query(`CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no prune now'; END $$;
      CREATE TRIGGER refuse_delete BEFORE DELETE ON offences FOR EACH ROW EXECUTE FUNCTION refuse_delete()`);
    const tally = new PostgresFailureTally(a!);
    const later = 2_000_000;
    const warned: string[] = [];
    const warning = (w: Error) => void warned.push(w.message);
    process.on('warning', warning);
    try {
      assert.equal(await tally.add('192.0.2.6', later, later - 600_000), 1, 'the offence counted');
      assert.equal(await tally.add('192.0.2.6', later + 1, later - 600_000), 2, 'the next counted too');
      await a!.query('DROP TRIGGER refuse_delete ON offences');
      // Not tried again at every offence: 5 s later.
      assert.equal(await tally.add('192.0.2.6', later + 2, later - 600_000), 3);
      assert.equal((await a!.query('SELECT 1 FROM offences WHERE address = $1', ['192.0.2.5'])).rowCount, 1);
      assert.equal(await tally.add('192.0.2.6', later + 5_000, later - 600_000), 4);
    } finally {
      process.off('warning', warning);
    }
    assert.deepEqual(warned, ['offences not pruned (tried again in 5 s): no prune now']);
    const { rows } = await a!.query('SELECT address FROM offences ORDER BY address');
    assert.deepEqual(rows.map((r) => r.address), ['192.0.2.6'], 'the prune ran again 5 s later');
  });

  it('a flood of addresses within the window is cut to the newest 100 000 at the next prune', async () => {
    const [a] = await database(1);
    const now = 10_000_000;
    // 100 010 addresses offending within the window, each at its own time.
    await a!.query(`INSERT INTO offences (address, times, last_at)
      SELECT '10.' || (i / 65536) || '.' || (i / 256 % 256) || '.' || (i % 256), ARRAY[$1 + i], $1 + i
      FROM generate_series(1, 100010) AS i`, [now]);
    assert.equal(await new PostgresFailureTally(a!).add('192.0.2.9', now + 200_000, now - 600_000), 1);
    const { rows } = await a!.query('SELECT COUNT(*)::int AS n, MIN(last_at)::bigint AS oldest FROM offences');
    assert.equal(rows[0].n, 100_000);
    assert.equal(Number(rows[0].oldest), now + 12, 'the oldest eleven went (and room for the new one)');
  });

  it('sessions per user: concurrent claims on two nodes never pass the limit, a release frees a slot', async () => {
    const [a, b] = await database(2);
    const nodes = [await PostgresUserSessions.start(a!, 'node-a'), await PostgresUserSessions.start(b!, 'node-b')];
    const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => nodes[i % 2]!.claim('alice', 3)));
    assert.equal(claims.filter(Boolean).length, 3);
    assert.equal(await nodes[0]!.claim('alice', 3), false);
    assert.equal(await nodes[1]!.claim('bob', 3), true, 'another user counts apart');
    const holder = nodes[claims.findIndex(Boolean) % 2]!;
    await holder.release('alice');
    assert.equal(await nodes[0]!.claim('alice', 3), true);
    assert.equal(await nodes[1]!.claim('alice', 0), true, '0: no limit');
  });

  // Found by a loaded run (a 451 at an anonymous login): a release locked the node's row, then the sum's;
  // a claim the sum's, then the node's. A release and a claim of one user at once deadlocked, and
  // PostgreSQL, a second later, ended one of them: a refused login, or a count left owed.
  it('sessions per user: claims and releases of one user at once never deadlock, and the counts come out right', { timeout: 60_000 }, async () => {
    const [a, b] = await database(2);
    const errors: unknown[] = [];
    const nodes = [await PostgresUserSessions.start(a!, 'node-a', (e) => errors.push(e)), await PostgresUserSessions.start(b!, 'node-b', (e) => errors.push(e))];
    for (let round = 0; round < 40; round++) {
      // Each node holds some sessions of the user; then every one of them ends while as many new ones begin.
      const held = await Promise.all(Array.from({ length: 6 }, (_, i) => nodes[i % 2]!.claim('carol', 0)));
      assert.ok(held.every(Boolean));
      const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => i % 2 === 0 ? nodes[(i / 2) % 2]!.release('carol') : nodes[((i - 1) / 2) % 2]!.claim('carol', 0)));
      const refused = results.filter((r) => r.status === 'rejected');
      assert.deepEqual(refused.map((r) => String((r as PromiseRejectedResult).reason?.detail ?? (r as PromiseRejectedResult).reason)), [], `round ${round}`);
      await Promise.all(Array.from({ length: 6 }, (_, i) => nodes[i % 2]!.release('carol')));
    }
    assert.deepEqual(errors.map(String), []);
    const { rows } = await a!.query("SELECT (SELECT count FROM user_session_totals WHERE user_name = 'carol') AS total, (SELECT COALESCE(SUM(count), 0)::int FROM user_sessions WHERE user_name = 'carol') AS per_node");
    assert.deepEqual(rows[0], { total: 0, per_node: 0 });
  });

  it("sessions per user: a node's counts from before its restart are dropped, the other node's kept", async () => {
    const [a, b, restarted] = await database(3);
    const na = await PostgresUserSessions.start(a!, 'node-a');
    const nb = await PostgresUserSessions.start(b!, 'node-b');
    assert.equal(await na.claim('carol', 3), true);
    assert.equal(await na.claim('carol', 3), true);
    assert.equal(await nb.claim('carol', 3), true);
    assert.equal(await nb.claim('carol', 3), false);
    await PostgresUserSessions.start(restarted!, 'node-a');
    assert.equal(await nb.claim('carol', 3), true);
    assert.equal(await nb.claim('carol', 3), true);
    assert.equal(await nb.claim('carol', 3), false, "node b's two and the new one: the limit");
  });
  /**
   * `pool`, where each statement `fate` names fails as it would with the
   * database away: 'refused' before it runs, 'lost' after it ran (committed,
   * the answer lost on the way).
   */
  function flaky(pool: pg.Pool, fate: (text: string) => 'refused' | 'lost' | null): pg.Pool {
    const query = async (q: string | { text: string }, values?: unknown[]) => {
      const f = fate(typeof q === 'string' ? q : q.text);
      if (f === 'refused') throw new Error('connect ECONNREFUSED (test)');
      const result = await pool.query(q as string, values);
      if (f === 'lost') throw new Error('Connection terminated unexpectedly (test)');
      return result;
    };
    return { query, connect: () => pool.connect() } as unknown as pg.Pool;
  }

  /** Fails the first statements matching `pattern`, one for each fate in `fates`, in order. */
  function failing(pattern: RegExp, fates: ('refused' | 'lost')[]): (text: string) => 'refused' | 'lost' | null {
    return (text) => (pattern.test(text) ? fates.shift() ?? null : null);
  }

  it('a settle the database refused, then took without answering, is counted once; a refused drop is sent again', async () => {
    const [a] = await database(1);
    const account = await addUser(a!, 'outage', 100_000);
    const errors: unknown[] = [];
    let fate: (text: string) => 'refused' | 'lost' | null = () => null;
    const room = await PostgresQuota.start(flaky(a!, (t) => fate(t)), 'node-a', (e) => errors.push(e));
    const ledger = await new QuotaBook(room).acquire(account);
    fate = failing(/used_bytes = GREATEST/, ['refused', 'lost']);
    assert.equal(await upload(ledger, 1000), 1000);
    await room.settled();
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 1000, used_files: 1, held_bytes: (await counters(a!, account.id)).held_bytes, held_files: 0 });
    fate = failing(/DELETE FROM quota_holds/, ['refused', 'refused']);
    ledger.release();
    await room.settled();
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 1000, used_files: 1, held_bytes: 0, held_files: 0 });
    assert.equal(errors.length, 2, 'said once for each outage');
    await room.stop();
  });

  it('a release the database refused, and one it took without answering, leave the count at the sessions still live', async () => {
    const [a, b] = await database(2);
    const errors: unknown[] = [];
    let fate: (text: string) => 'refused' | 'lost' | null = () => null;
    const na = await PostgresUserSessions.start(flaky(a!, (t) => fate(t)), 'node-a', (e) => errors.push(e));
    const nb = await PostgresUserSessions.start(b!, 'node-b');
    for (let i = 0; i < 3; i++) assert.equal(await na.claim('dave', 4), true);
    fate = failing(/UPDATE user_sessions SET count = count - 1/, ['refused', 'lost']);
    await na.release('dave');
    await na.release('dave');
    const count = async () => (await a!.query("SELECT (SELECT count FROM user_session_totals WHERE user_name = 'dave') AS total, (SELECT count FROM user_sessions WHERE user_name = 'dave' AND node_id = 'node-a') AS mine")).rows[0];
    // One session live on node a: a release sent again would count 0 (the lost one ran), and let a fifth session in.
    const deadline = Date.now() + 3000;
    while (JSON.stringify(await count()) !== JSON.stringify({ total: 1, mine: 1 }) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await count(), { total: 1, mine: 1 });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await count(), { total: 1, mine: 1 }, 'and it stays there');
    for (let i = 0; i < 3; i++) assert.equal(await nb.claim('dave', 4), true);
    assert.equal(await nb.claim('dave', 4), false, 'the limit counts the live session');
    assert.equal(errors.length, 1, 'said once');
    await na.release('dave');
    assert.deepEqual(await count(), { total: 3, mine: 0 });
  });

  /**
   * `first` and `second` run so that, if they lock two rows in opposite orders, each takes its first before the
   * other's second, every time: `hold` (run in a transaction on a connection of its own) takes the row `first`
   * locks first; `first` starts and waits for it; `second` starts and runs up to its own wait (behind `first`);
   * then `hold` lets go. Locked in one order, they take turns; in opposite orders, they deadlock, and PostgreSQL
   * ends one of them a second later (deadlock_timeout). With `skipsLocked`, a statement that waits for no lock
   * (it skips the rows held, as the fixed code does) may run to its end instead; without it both must wait, so a
   * case whose statements stopped meeting cannot pass unseen.
   */
  async function crossed(pool: pg.Pool, hold: string, values: unknown[], first: () => Promise<unknown>, second: () => Promise<unknown>, { skipsLocked = false } = {}): Promise<unknown[]> {
    const holder = await holding(pool, hold, values);
    try {
      const one = started(first);
      await waitingOrDone(holder.client, [one], { orDone: skipsLocked });
      const two = started(second);
      await waitingOrDone(holder.client, [one, two], { orDone: skipsLocked });
      await holder.letGo();
      return refusals([one, two]);
    } finally {
      holder.client.release();
    }
  }

  /** `hold` run in a transaction on a connection of its own: it holds the row it locked until letGo(). */
  async function holding(pool: pg.Pool, hold: string, values: unknown[] = []): Promise<{ client: pg.PoolClient; pid: number; letGo(): Promise<void> }> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      assert.equal((await client.query(hold, values)).rowCount, 1, 'the row to hold');
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      return { client, pid, letGo: async () => void await client.query('COMMIT') };
    } catch (err) {
      client.release(true);
      throw err;
    }
  }

  interface Started {
    readonly result: Promise<PromiseSettledResult<unknown>[]>;
    done: boolean;
  }

  function started(run: () => Promise<unknown>): Started {
    const s: Started = { result: Promise.allSettled([run()]), done: false };
    void s.result.then(() => (s.done = true));
    return s;
  }

  /** What each of `statements` failed with. */
  async function refusals(statements: Started[]): Promise<unknown[]> {
    const results = (await Promise.all(statements.map((s) => s.result))).flat();
    return results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  }

  /** Until each of `statements` (with `orDone`, each not done yet) waits for a lock (held by `pid` alone, if given). */
  async function waitingOrDone(client: pg.PoolClient, statements: Started[], { pid, orDone = true }: { pid?: number; orDone?: boolean } = {}): Promise<void> {
    for (const deadline = Date.now() + 5000; ;) {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
         AND ($1::int IS NULL OR pg_blocking_pids(pid) = ARRAY[$1::int])`, [pid ?? null]);
      if (rows[0]!.n >= statements.filter((s) => !(orDone && s.done)).length) return;
      assert.ok(Date.now() < deadline, orDone ? 'the statements started wait for a lock, or are done' : 'the statements started wait for a lock');
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * 2000 more users, as a real deployment has: PostgreSQL then updates the users' rows of a statement in the
   * order it is given them (a nested loop over the key), not in the table's order as it does in a tiny table.
   */
  async function otherUsers(pool: pg.Pool): Promise<void> {
    await pool.query(`INSERT INTO users (name, home, protocols, permissions, created_at, updated_at)
      SELECT 'other' || i, '/nonexistent', 'sftp', '', 0, 0 FROM generate_series(1, 2000) AS i`);
  }

  /** Errors as said, with their causes (a deadlock is the cause of the background writes' errors). */
  const said = (errors: unknown[]) => errors.map((e) => `${String(e)} ${String((e as Error).cause ?? '')}`);

  it("sessions per user: a node's stop while one of its sessions ends does not deadlock (the sums locked first, by name)", async () => {
    const [a] = await database(1);
    const errors: unknown[] = [];
    const na = await PostgresUserSessions.start(a!, 'node-a', (e) => errors.push(e));
    assert.equal(await na.claim('erin', 0), true);
    assert.equal(await na.claim('erin', 0), true);
    const refused = await crossed(a!, "SELECT 1 FROM user_sessions WHERE node_id = 'node-a' AND user_name = 'erin' FOR UPDATE", [],
      () => na.stop(), () => na.release('erin'));
    assert.deepEqual([...said(refused), ...said(errors)], []);
    const { rows } = await a!.query("SELECT (SELECT count FROM user_session_totals WHERE user_name = 'erin') AS total, (SELECT count(*)::int FROM user_sessions) AS rows");
    assert.deepEqual(rows[0], { total: 0, rows: 0 });
  });

  it('sessions per user: two nodes stopping at once, each with sessions of the same users, do not deadlock', async () => {
    const [a, b] = await database(2);
    const errors: unknown[] = [];
    const na = await PostgresUserSessions.start(a!, 'node-a', (e) => errors.push(e));
    const nb = await PostgresUserSessions.start(b!, 'node-b', (e) => errors.push(e));
    // Each node's rows in the other order.
    for (const user of ['u1', 'u2', 'u3']) assert.equal(await na.claim(user, 0), true);
    for (const user of ['u3', 'u2', 'u1']) assert.equal(await nb.claim(user, 0), true);
    const refused = await crossed(a!, "SELECT 1 FROM user_session_totals WHERE user_name = 'u2' FOR UPDATE", [],
      () => na.stop(), () => nb.stop());
    assert.deepEqual([...said(refused), ...said(errors)], []);
    const { rows } = await a!.query('SELECT (SELECT sum(count)::int FROM user_session_totals) AS total, (SELECT count(*)::int FROM user_sessions) AS rows');
    assert.deepEqual(rows[0], { total: 0, rows: 0 });
  });

  it("quota: a ledger closed while its grant is under way does not deadlock (the user's row locked first)", async () => {
    const [a] = await database(1);
    const account = await addUser(a!, 'closing', 100_000);
    const errors: unknown[] = [];
    const quota = await PostgresQuota.start(a!, 'node-a', (e) => errors.push(e));
    const room = await quota.open(account);
    await room.grow!({ bytes: 1000, files: 0 });
    const refused = await crossed(a!, "SELECT 1 FROM quota_holds WHERE node_id = 'node-a' AND user_id = $1 FOR UPDATE", [account.id],
      async () => {
        room.close();
        await quota.settled();
      },
      () => room.grow!({ bytes: 10, files: 0 }));
    assert.deepEqual([...said(refused), ...said(errors)], []);
    await quota.stop();
    assert.deepEqual(await counters(a!, account.id), { used_bytes: 0, used_files: 0, held_bytes: 0, held_files: 0 });
  });

  it('quota: two nodes stopping at once, each holding leases of the same users, do not deadlock', async () => {
    const [a, b] = await database(2);
    await otherUsers(a!);
    const users = [await addUser(a!, 'v1', 100_000), await addUser(a!, 'v2', 100_000), await addUser(a!, 'v3', 100_000)];
    const errors: unknown[] = [];
    const qa = await PostgresQuota.start(a!, 'node-a', (e) => errors.push(e));
    const qb = await PostgresQuota.start(b!, 'node-b', (e) => errors.push(e));
    // Each node's holds in the other order.
    for (const u of users) await (await qa.open(u)).grow!({ bytes: 100, files: 0 });
    for (const u of [...users].reverse()) await (await qb.open(u)).grow!({ bytes: 100, files: 0 });
    const refused = await crossed(a!, 'SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [users[1]!.id],
      () => qa.stop(), () => qb.stop());
    assert.deepEqual([...said(refused), ...said(errors)], []);
    for (const u of users) assert.deepEqual(await counters(a!, u.id), { used_bytes: 0, used_files: 0, held_bytes: 0, held_files: 0 });
  });

  it("quota: a user removed while one of its uploads is settled does not deadlock (the user's row locked first)", async () => {
    const [a] = await database(1);
    const account = await addUser(a!, 'leaving', 100_000);
    const errors: unknown[] = [];
    const quota = await PostgresQuota.start(a!, 'node-a', (e) => errors.push(e));
    const room = await quota.open(account);
    await room.grow!({ bytes: 1000, files: 0 });
    // The settle's number stored: the next settle of the user updates that row.
    room.settle({ bytes: 100, files: 1 }, { bytes: 100, files: 0 }, { bytes: 0, files: 0 });
    await quota.settled();
    const users = new PostgresUsers(a!, new UserCache(), new LastLogins(a!), new WriteTurns(2));
    const refused = await crossed(a!, "SELECT 1 FROM quota_settles WHERE node_id = 'node-a' AND user_id = $1 FOR UPDATE", [account.id],
      async () => {
        room.settle({ bytes: 100, files: 1 }, { bytes: 100, files: 0 }, { bytes: 0, files: 0 });
        await quota.settled();
      },
      () => users.remove(account.id));
    assert.deepEqual([...said(refused), ...said(errors)], []);
    assert.equal((await a!.query('SELECT 1 FROM users WHERE id = $1', [account.id])).rowCount, 0, 'removed');
    await quota.stop();
  });

  it("last logins: two nodes' batches of the same users do not deadlock (written in the users' order)", async () => {
    const [a, b] = await database(2);
    await otherUsers(a!);
    const users = [await addUser(a!, 'w1', 0), await addUser(a!, 'w2', 0), await addUser(a!, 'w3', 0)];
    const [la, lb] = [new LastLogins(a!), new LastLogins(b!)];
    const written: Promise<void>[] = [];
    const refused = await crossed(a!, 'SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [users[1]!.id],
      async () => {
        for (const u of users) written.push(la.record(u.id));
        await la.close();
      },
      async () => {
        for (const u of [users[2]!, users[1]!]) written.push(lb.record(u.id));
        await lb.close();
      });
    const failed = (await Promise.allSettled(written)).flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    assert.deepEqual([...said(refused), ...said(failed)], []);
    const { rows } = await a!.query('SELECT count(*)::int AS n FROM users WHERE last_login_at IS NOT NULL');
    assert.deepEqual(rows[0], { n: 3 });
  });

  it('in-place locks: a user removed while a node drops its locks (two of the user\'s files) does not deadlock', async () => {
    const [a] = await database(1);
    const account = await addUser(a!, 'inplace', 0);
    await otherUsers(a!);
    // Other files written in place on node b, one per user: PostgreSQL then finds rows by its indexes.
    await a!.query("INSERT INTO write_locks (user_id, inode, node_id) SELECT id, 'f' || id, 'node-b' FROM users WHERE name LIKE 'other%'");
    await a!.query('ANALYZE write_locks');
    const locks = await PostgresWriteLocks.start(a!, 'node-a', unexpected, () => ({ taken: Promise.resolve(), away: new Promise<void>(() => undefined) }));
    assert.equal(await locks.take(account.id, '9002'), true);
    assert.equal(await locks.take(account.id, '9001'), true);
    const users = new PostgresUsers(a!, new UserCache(), new LastLogins(a!), new WriteTurns(2));
    const refused = await crossed(a!, "SELECT 1 FROM write_locks WHERE inode = '9002' FOR UPDATE", [],
      () => locks.stop(), () => users.remove(account.id));
    assert.deepEqual(said(refused), []);
    const { rows } = await a!.query("SELECT count(*)::int AS n FROM write_locks WHERE node_id = 'node-a'");
    assert.deepEqual(rows[0], { n: 0 });
  });

  // The prunes of two nodes met the rows in two orders when one moved between their snapshots: each held one
  // the other wanted. Crossed here with two holders: node a's prune starts while W is held, X then moves, and
  // node b's prune starts while Z (between X and Y for node a) is held. A prune that skips rows held runs through.
  it("offences: two nodes' prunes at once do not deadlock when a row moved between them, and what one skipped goes next time", async () => {
    const [a, b, c] = await database(3);
    // W, X, Z, Y in this order in the table: W and Z past node a's window only, X and Y past node b's too.
    await a!.query(`INSERT INTO offences (address, times, last_at) VALUES ('192.0.2.1', '{1500000}', 1500000),
      ('192.0.2.2', '{1000000}', 1000000), ('192.0.2.3', '{1500000}', 1500000), ('192.0.2.4', '{1000000}', 1000000)`);
    const held = async (address: string) => holding(a!, 'SELECT 1 FROM offences WHERE address = $1 FOR UPDATE', [address]);
    const [w, z] = [await held('192.0.2.1'), await held('192.0.2.3')];
    let refused: unknown[];
    try {
      // Node a's prune (its window began at 1 600 000) sees X where it was, before Y.
      const pruneA = started(() => new PostgresFailureTally(a!).add('198.51.100.1', 2_200_000, 1_600_000));
      await waitingOrDone(w.client, [pruneA], { pid: w.pid });
      // Node c, whose clock lags, counts an offence of X: X stays old, and its new version comes after Y.
      await new PostgresFailureTally(c!).add('192.0.2.2', 1_100_000, 500_000);
      await w.letGo();
      // Node a has X (and W), and waits for Z; node b's prune (its window began at 1 400 000) meets Y first, then X.
      await waitingOrDone(z.client, [pruneA], { pid: z.pid });
      const pruneB = started(() => new PostgresFailureTally(b!).add('198.51.100.2', 2_000_000, 1_400_000));
      await waitingOrDone(z.client, [pruneA, pruneB]);
      await z.letGo();
      refused = await refusals([pruneA, pruneB]);
    } finally {
      w.client.release();
      z.client.release();
    }
    assert.deepEqual(said(refused), []);
    // Node a's next prune takes what was held from the last one.
    assert.equal(await new PostgresFailureTally(a!).add('198.51.100.1', 2_300_000, 1_600_000), 2);
    const { rows } = await a!.query('SELECT address FROM offences ORDER BY address');
    assert.deepEqual(rows.map((r) => r.address), ['198.51.100.1', '198.51.100.2']);
  });

  it("session ends: two nodes' prunes at once do not deadlock when their plans meet the old rows in two orders", async () => {
    // Node a's plan reads the table, node b's the index on `at` (as statistics may decide, between two nodes or two moments).
    const [a, b] = await database(2, { options: ['-c enable_indexscan=off -c enable_bitmapscan=off', '-c enable_seqscan=off -c enable_bitmapscan=off'] });
    // Two ends older than the day kept: in the table the later one first, in the index the earlier.
    const { rows: old } = await a!.query<{ seq: number }>(`INSERT INTO session_ends (at, user_name, reason)
      VALUES (now() - interval '2 days', 'old1', 'ended'), (now() - interval '3 days', 'old2', 'ended') RETURNING seq`);
    const refused = await crossed(a!, 'SELECT 1 FROM session_ends WHERE seq = $1 FOR UPDATE', [old[0]!.seq],
      () => endUserSessionsEverywhere(a!, 'erin', 'ended by an administrator'),
      () => endUserSessionsEverywhere(b!, 'frank', 'ended by an administrator'), { skipsLocked: true });
    assert.deepEqual(said(refused), []);
    // The next end prunes what a prune skipped.
    await endUserSessionsEverywhere(a!, 'grace', 'ended by an administrator');
    const { rows } = await a!.query('SELECT user_name FROM session_ends ORDER BY seq');
    assert.deepEqual(rows.map((r) => r.user_name), ['erin', 'frank', 'grace']);
  });

  it("migration 016, run while a node writes last logins of the users it changes, does not deadlock (their rows locked by id first)", async () => {
    const [a, b] = await database(2, { upTo: 15 });
    // The earlier user's expiry before the year 0000, the later one's after 9999: 016 changes the later one first.
    const [early, late] = [await addUser(a!, 'x1', 0), await addUser(a!, 'x2', 0)];
    await a!.query('UPDATE users SET expires_at = $2 WHERE id = $1', [early.id, -62167219200001]);
    await a!.query('UPDATE users SET expires_at = $2 WHERE id = $1', [late.id, 253402300800000]);
    const logins = new LastLogins(b!);
    const refused = await crossed(a!, 'SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [late.id],
      async () => {
        const client = await a!.connect();
        try {
          assert.deepEqual(await migrate(client, loadMigrations(migrationsDir('postgres')).filter((m) => m.version <= 16)), [16]);
        } finally {
          client.release();
        }
      },
      async () => {
        const written = [logins.record(early.id), logins.record(late.id)];
        await logins.close();
        await Promise.all(written);
      });
    assert.deepEqual(said(refused), []);
    const { rows } = await a!.query('SELECT expires_at, last_login_at IS NOT NULL AS logged_in FROM users ORDER BY id');
    assert.deepEqual(rows, [{ expires_at: -62167219200000, logged_in: true }, { expires_at: 253402300799999, logged_in: true }]);
  });
});
