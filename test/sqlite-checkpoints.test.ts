import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Checkpointer } from '../src/store/sqlite/checkpointer.js';
import { openSqliteStore } from '../src/store/sqlite/store.js';
import { loggedIn } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * A serving process's commits leave the WAL's checkpoints (which fsync) to
 * a thread of the coordinating process, every 5 s
 * (src/store/sqlite/checkpointer.ts); they checkpoint only past 10,000
 * frames, a fallback. A login's one frame therefore reaches the database
 * file itself within seconds, where a connection left to itself would wait
 * for 1,000. The database file is read alone, copied without its WAL: only
 * checkpointed rows are in it.
 */
describe('SQLite checkpoints on a thread of their own', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'sluice-ckpt-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  /** alice's last login as the database file alone holds it. */
  const checkpointedLogin = (srv: TestServer, n: number): number | null => {
    const copy = join(scratch, `copy-${n}.db`);
    copyFileSync(join(srv.dir, 'data', 'sluice.db'), copy);
    const db = new Database(copy, { readonly: true });
    try {
      const row = db.prepare('SELECT last_login_at AS at FROM users WHERE name = ?').get('alice') as { at: number | null } | undefined;
      return row?.at ?? null;
    } catch {
      return null; // copied in the middle of a checkpoint: the next copy will do
    } finally {
      db.close();
    }
  };

  for (const workers of ['1', '2']) {
    it(`workers ${workers}: a login's last-login time is in the database file within seconds`, async () => {
      const srv = await TestServer.start({
        yaml: 'ftp:\n  tls: optional\n',
        env: { SLUICE_WORKERS: workers },
        users: [{ name: 'alice', password: 'alice password' }],
      });
      try {
        const before = Date.now();
        const c = await loggedIn(srv.ftpPort, 'alice', 'alice password');
        await c.cmd('QUIT');
        c.close();
        let at: number | null = null;
        for (let n = 0; at === null && Date.now() - before < 20_000; n++) {
          await new Promise((r) => setTimeout(r, 250));
          at = checkpointedLogin(srv, n);
        }
        assert.ok(at !== null && at >= before - 1000, `the login of ${new Date(before).toISOString()} is not in the database file after 20 s (${at})`);
      } finally {
        await srv.stop();
      }
    });
  }

  it("a stopped thread leaves the process's SQLite locks alone (closing any other descriptor of -shm would drop them)", async () => {
    const file = join(scratch, 'locks.db');
    const store = openSqliteStore(file);
    try {
      const checkpointer = store.checkpointOnThread(() => undefined);
      await new Promise((r) => setTimeout(r, 1500));
      await checkpointer.stop();
      // SQLite's "a connection is open" lock: a shared lock on byte 128 of -shm, which another process may not take exclusively.
      const probe = spawnSync('python3', ['-c', `
import fcntl, sys
fd = open(sys.argv[1], 'r+b')
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
    print('granted')
except OSError:
    print('refused')
`, `${file}-shm`], { encoding: 'utf8' });
      assert.equal(probe.stdout.trim(), 'refused', probe.stderr);
    } finally {
      await store.close();
    }
  });

  it('a thread that cannot open the database says why, and is tried again later each time', async () => {
    const said: string[] = [];
    const checkpointer = new Checkpointer(join(scratch, 'missing', 'nothing.db'), (m) => said.push(m));
    try {
      await new Promise((r) => setTimeout(r, 3500));
    } finally {
      await checkpointer.stop();
    }
    assert.ok(said.length >= 2 && said.length <= 3, said.join(' | '));
    assert.match(said[0]!, /checkpoint thread ended \(.*(open|CANTOPEN).*\): another in 1 s/);
    assert.match(said[1]!, /another in 2 s/);
  });

  it("a long WAL's RESTART checkpoint does not hold up commits behind an open reader", async () => {
    const file = join(scratch, 'restart.db');
    const writer = new Database(file);
    writer.pragma('journal_mode = WAL');
    writer.pragma('busy_timeout = 5000');
    writer.pragma('wal_autocheckpoint = 10000');
    writer.exec('CREATE TABLE rows (x BLOB)');
    const insert = writer.prepare('INSERT INTO rows VALUES (?)');
    // Over 4,000 frames (16 KiB rows: four pages each) before the thread's first turn, at 5 s.
    for (let i = 0; i < 1100; i++) insert.run(Buffer.alloc(16 * 1024, i));
    const reader = new Database(file, { readonly: true });
    const checkpointer = new Checkpointer(file, () => undefined);
    let longest = 0;
    try {
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM rows').get();
      for (const end = Date.now() + 7000; Date.now() < end; ) {
        const t = performance.now();
        insert.run(Buffer.alloc(100));
        longest = Math.max(longest, performance.now() - t);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      reader.exec('COMMIT');
      await checkpointer.stop();
      reader.close();
      writer.close();
    }
    assert.ok(longest < 1000, `a commit waited ${longest.toFixed(0)} ms`);
  });
});

