import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { KINDS, connectClient, outcome, type FileClient } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';

/*
 * Vulnerability 2 of issue 11: per-directory rights are keyed by path, and a
 * rename used to check only the parents. A default user renamed the
 * upload-only /incoming away and then read it, or renamed the read-only /pub,
 * wrote inside and renamed it back. Over every protocol.
 */
describe('permission overrides cannot be renamed away', () => {
  let srv: TestServer;
  const password = 'rename password';
  const user = (kind: string) => `mover-${kind}`;

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_FTP_TLS: 'optional' },
      users: KINDS.map((k) => ({ name: user(k), password })),
    });
    for (const k of KINDS) {
      const name = user(k);
      for (const [dir, perms] of [
        ['/incoming', 'upload'],
        ['/pub', 'list,download,rename'],
        ['/dropr', 'upload,rename'],
        ['/ro-empty', 'list'],
        ['/deep/inner', 'upload'],
      ] as const) {
        assert.equal(sluice(srv.dir, ['user', 'perm', name, dir, perms], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
      }
      const home = srv.home(name);
      for (const d of ['incoming', 'pub', 'dropr', 'ro-empty', 'deep/inner']) mkdirSync(join(home, d), { recursive: true });
      writeFileSync(join(home, 'incoming/secret.txt'), 'SECRET');
      writeFileSync(join(home, 'pub/readme.txt'), 'README');
      writeFileSync(join(home, 'dropr/dropped.txt'), 'DROPPED');
      writeFileSync(join(home, 'mine.txt'), 'MINE');
    }
  });
  after(() => srv.stop());

  for (const kind of KINDS) {
    describe(kind, () => {
      let c: FileClient;
      let home: string;
      before(async () => {
        c = await connectClient(kind, srv, user(kind), password);
        home = srv.home(user(kind));
      });
      after(() => c.close());

      it('cannot rename the upload-only /incoming away and then read it', async () => {
        assert.notEqual(await outcome(c.rename('/incoming', '/inc-moved')), 'ok');
        assert.notEqual(await outcome(c.list('/inc-moved')), 'ok');
        assert.notEqual(await outcome(c.get('/inc-moved/secret.txt')), 'ok');
        assert.notEqual(await outcome(c.list('/incoming')), 'ok');
        assert.ok(existsSync(join(home, 'incoming/secret.txt')) && !existsSync(join(home, 'inc-moved')));
      });

      it('cannot rename the read-only /pub to write and delete inside it', async () => {
        assert.notEqual(await outcome(c.rename('/pub', '/pub-moved')), 'ok');
        assert.notEqual(await outcome(c.put('/pub-moved/planted.txt', 'x')), 'ok');
        assert.notEqual(await outcome(c.remove('/pub-moved/readme.txt')), 'ok');
        assert.notEqual(await outcome(c.put('/pub/planted.txt', 'x')), 'ok');
        assert.notEqual(await outcome(c.remove('/pub/readme.txt')), 'ok');
        assert.equal(readFileSync(join(home, 'pub/readme.txt'), 'utf8'), 'README');
        assert.ok(!existsSync(join(home, 'pub-moved')) && !existsSync(join(home, 'pub/planted.txt')));
      });

      it('cannot move a directory that holds an override, nor remove an override directory', async () => {
        assert.notEqual(await outcome(c.rename('/deep', '/shallow')), 'ok');
        assert.notEqual(await outcome(c.rename('/mine.txt', '/incoming')), 'ok', 'nor take its name');
        assert.notEqual(await outcome(c.rmdir('/ro-empty')), 'ok');
        assert.ok(existsSync(join(home, 'deep/inner')) && existsSync(join(home, 'ro-empty')));
      });

      it('cannot move a file out of a place it may not read, nor into a place it may not write', async () => {
        // /dropr grants rename: inside it a rename works, but out of it the file would become readable.
        assert.notEqual(await outcome(c.rename('/dropr/dropped.txt', '/dropped.txt')), 'ok');
        assert.ok(!existsSync(join(home, 'dropped.txt')));
        // /pub grants rename too, but no upload: moving a file in would plant it there.
        assert.notEqual(await outcome(c.rename('/mine.txt', '/pub/mine.txt')), 'ok');
        assert.ok(!existsSync(join(home, 'pub/mine.txt')));
        if (kind === 'sftp') {
          // FTP's RNFR must first say whether the name exists, which a drop box does not tell.
          await c.rename('/dropr/dropped.txt', '/dropr/renamed.txt');
          assert.equal(readFileSync(join(home, 'dropr/renamed.txt'), 'utf8'), 'DROPPED');
        }
        await c.rename('/mine.txt', '/dropr/mine.txt');
        assert.equal(readFileSync(join(home, 'dropr/mine.txt'), 'utf8'), 'MINE', 'moving into a narrower place is fine');
      });
    });
  }

  it('refusals are audited as denied', async () => {
    const lines = await srv.auditUntilAll(KINDS.map((k) => (l) => l.event === 'denied' && l.operation === 'rename' && l.user === user(k) && l.path === '/incoming'));
    const denied = lines.filter((l) => l.event === 'denied' && l.operation === 'rename');
    for (const k of KINDS) {
      assert.ok(denied.some((l) => l.user === user(k) && l.path === '/incoming'), `${k}: rename of /incoming audited`);
    }
  });
});
