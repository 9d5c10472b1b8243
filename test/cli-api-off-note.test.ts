import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { codeOrEnded, loggedIn } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * With the admin API off (the default), a change of a user made in the CLI
 * reaches only the store, and on SQLite nothing tells the running server:
 * its live sessions go on as they logged in. Found by a review of fa167b6:
 * `user set --home` left sessions in the old home, and `user disable` a
 * session running, without a word. The CLI now says so when a server serves
 * the data directory, and only then.
 */
describe('a change made in the CLI that cannot reach the running server', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      users: [{ name: 'ola', password: 'ola-secret-1' }],
    });
  });
  after(async () => {
    await srv?.stop();
  });

  it('is written, and the CLI says the server was not told', { timeout: 60_000 }, async () => {
    const c = await loggedIn(srv.ftpPort, 'ola', 'ola-secret-1');
    try {
      const r = sluice(srv.dir, ['user', 'disable', 'ola']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'disabled user ola\n');
      assert.match(r.stderr, /note: sluice serve \(pid \d+\) serves .* with its admin API off/);
      // What the note says: the session open before goes on; a new login is refused.
      assert.equal(await codeOrEnded(c, 'PWD'), 257);
      await assert.rejects(loggedIn(srv.ftpPort, 'ola', 'ola-secret-1'), /login/);
    } finally {
      c.close();
    }
    const enabled = sluice(srv.dir, ['user', 'enable', 'ola']);
    assert.equal(enabled.code, 0, enabled.stderr);
    // A change refused is written nowhere: no note (found by a review of 62b1c6a, which noted it first).
    const refused = sluice(srv.dir, ['user', 'disable', 'nobody']);
    assert.equal(refused.code, 2);
    assert.doesNotMatch(refused.stderr, /note:/);
  });

  it('is said by nobody where no server runs', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    try {
      assert.equal(sluice(dir, ['user', 'add', 'pia', '--password-stdin'], 'pia-secret-12\n').code, 0);
      const r = sluice(dir, ['user', 'disable', 'pia']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
