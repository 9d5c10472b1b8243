// No home may lie in another user's home or hold one. Whoever holds the
// outer home can rename the inner one away and put a link of their own in its
// place: a review did so (the link moved one directory up, so that its
// relative text climbed out of the outer home), and the inner user's next
// login served a third user's files. Two users may still share one home.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
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
