// No home may lie in another user's home or hold one. Whoever holds the
// outer home can rename the inner one away and put a link of their own in its
// place: a review did so (the link moved one directory up, so that its
// relative text climbed out of the outer home), and the inner user's next
// login served a third user's files. Two users may still share one home.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { adminRequest } from './helpers/admin-http.js';
import { BIN, sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';

const PASSWORD = 'nesting password 1';

describe('homes nested in one another', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: PASSWORD }, { name: 'carol', password: PASSWORD }] });
  });
  after(() => srv.stop());

  const add = (name: string, home: string) => sluice(srv.dir, ['user', 'add', name, '--password-stdin', '--home', home], `${PASSWORD}\n`);

  it('a home inside another user\'s is refused, saying whose', () => {
    const r = add('bob', join(srv.home('alice'), 'bob'));
    assert.notEqual(r.code, 0, 'refused');
    assert.match(r.stderr, /would lie in user alice's home /);
  });

  it('a home holding another user\'s is refused', () => {
    const site = join(srv.dir, 'sites', 'shop');
    const dev = add('dev', join(site, 'dev'));
    assert.equal(dev.code, 0, dev.stderr);
    const r = add('agency', site);
    assert.notEqual(r.code, 0, 'refused');
    assert.match(r.stderr, /would hold user dev's home /);
  });

  it('a link is no way around it: a home reached through one is compared where it leads', () => {
    mkdirSync(join(srv.dir, 'links'), { recursive: true });
    const via = join(srv.dir, 'links', 'to-alice');
    // Made by the administrator, outside any home.
    symlinkSync(srv.home('alice'), via);
    const r = add('sneaky', join(via, 'inner'));
    assert.notEqual(r.code, 0, 'refused');
    assert.match(r.stderr, /would lie in user alice's home /);
  });

  it('nor is a link inside another user\'s home: a home written through one is compared as written too', () => {
    // alice can make such a link herself (a link moved one level up climbs out of her home).
    mkdirSync(join(srv.dir, 'elsewhere'), { recursive: true });
    symlinkSync('../../../elsewhere', join(srv.home('alice'), 'L'));
    const r = add('through', join(srv.home('alice'), 'L', 'through'));
    assert.notEqual(r.code, 0, 'refused');
    assert.match(r.stderr, /would lie in user alice's home /);
  });

  it('a change of home is checked the same way; the user\'s own old home does not count', () => {
    const twin = add('twin', srv.home('alice'));
    assert.equal(twin.code, 0, `two users may share one home: ${twin.stderr}`);
    const moved = sluice(srv.dir, ['user', 'set', 'twin', '--home', join(srv.home('carol'), 'x')]);
    assert.notEqual(moved.code, 0, 'refused');
    assert.match(moved.stderr, /would lie in user carol's home /);
    const own = sluice(srv.dir, ['user', 'set', 'carol', '--home', join(srv.home('carol'), 'sub')]);
    assert.equal(own.code, 0, own.stderr);
  });

  it('a nesting an older version left is reported at start, naming both users', async () => {
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      const inner = join(srv.home('alice'), 'legacy');
      mkdirSync(inner, { recursive: true });
      db.prepare('UPDATE users SET home = ? WHERE name = ?').run(inner, 'twin');
    } finally {
      db.close();
    }
    await srv.restart();
    await srv.logs(/home \S+\/legacy of twin lies in \S+\/alice, the home of alice, who can redirect its logins anywhere/);
  });

  it('so is a home written through a link in another user\'s home, though its real place is elsewhere', async () => {
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      // alice's L (made above) leads out of her home: realpath puts the home elsewhere, every login resolves L.
      mkdirSync(join(srv.dir, 'elsewhere', 'through'), { recursive: true });
      db.prepare('UPDATE users SET home = ? WHERE name = ?').run(join(srv.home('alice'), 'L', 'through'), 'twin');
    } finally {
      db.close();
    }
    await srv.restart();
    await srv.logs(/home \S+\/alice\/L\/through of twin lies in \S+\/alice, the home of alice/);
  });
});

describe('anonymous FTP root inside a user\'s home', () => {
  it('stops the start, saying why', async () => {
    const srv = await TestServer.start({ users: [{ name: 'webmaster', password: PASSWORD }] });
    try {
      const yaml = `ftp:\n  tls: optional\n  anonymous:\n    enabled: true\n    root: ${join(srv.home('webmaster'), 'public')}\n`;
      await assert.rejects(
        srv.restart(() => writeFileSync(join(srv.dir, 'sluice.yaml'), yaml)),
        /ftp\.anonymous\.root \S+ would lie in user webmaster's home \S+: anonymous FTP needs a root of its own/,
      );
    } finally {
      await srv.stop();
    }
  });
});

/*
 * Found by a review: the check read the other users, then the new user's
 * password was hashed and its home made before the insert, so two users
 * added at once, one's home inside the other's, were each checked against a
 * store without the other. Both were made, and the outer user read and
 * overwrote the inner one's files. The store now checks again inside the
 * transaction that writes the home, under a lock every such write takes.
 */
describe('homes added at once, one inside the other', () => {
  let srv: TestServer;
  let socketPath: string;
  before(async () => {
    srv = await TestServer.start({ env: { SLUICE_ADMIN_LISTEN: './admin.sock' } });
    socketPath = join(srv.dir, 'admin.sock');
  });
  after(() => srv.stop());

  it('through the admin API: of each pair one is made, the other refused, five pairs in turn', async () => {
    const post = (name: string, home: string) => adminRequest({ socketPath }, 'POST', '/api/v1/users', { body: { name, password: PASSWORD, home } });
    for (let i = 0; i < 5; i++) {
      const outer = join(srv.dir, 'api-race', `site${i}`);
      const replies = await Promise.all([post(`outer${i}`, outer), post(`inner${i}`, join(outer, 'inner'))]);
      const statuses = replies.map((r) => r.status).sort();
      assert.deepEqual(statuses, [201, 400], `pair ${i}: ${replies.map((r) => r.text).join(', ')}`);
      assert.match(replies.find((r) => r.status === 400)?.text ?? '', /would (lie in|hold) user (outer|inner)\d's home/);
    }
  });

  it('through CLI processes on the same store: the same, and the refused one leaves no home of its own behind', async () => {
    const run = promisify(execFile);
    const add = (name: string, home: string) =>
      run(process.execPath, [BIN, 'user', 'add', name, '--home', home, '--generate-password'], { cwd: srv.dir, env: { ...process.env, SLUICE_LOG_LEVEL: 'warn' } }).then(
        () => 0,
        (err: { code?: number; stderr?: string }) => {
          assert.match(err.stderr ?? '', /would (lie in|hold) user \w+'s home/);
          return err.code ?? -1;
        },
      );
    for (let i = 0; i < 4; i++) {
      const outer = join(srv.dir, 'cli-race', `site${i}`);
      const codes = await Promise.all([add(`clio${i}`, outer), add(`clii${i}`, join(outer, 'inner'))]);
      assert.equal(codes.filter((c) => c === 0).length, 1, `pair ${i}: exit codes ${codes.join(', ')}`);
      if (codes[0] === 0) assert.ok(!existsSync(join(outer, 'inner')), `pair ${i}: the refused inner home was removed`);
    }
  });
});
