import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { loggedIn } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * A serving process's commits never checkpoint the WAL (that would fsync on
 * its event loop); a thread of the coordinating process does
 * once the WAL holds 1,000 frames or its frames have waited 5 s
 * (src/store/sqlite/checkpointer.ts). A login's one frame therefore reaches
 * the database file itself within seconds, where a connection left to itself
 * would wait for 1,000. The database file is read alone,
 * copied without its WAL: only checkpointed rows are in it.
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
});
